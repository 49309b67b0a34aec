/* Small DOM helpers shared by the page's modules: elements and icons. Every icon is a
 * span[data-icon="<name>"] wrapping an svg, as on the real page. */

export const PATHS = {
  'refresh-large': 'M12 4a8 8 0 1 0 7.7 10h-2.1A6 6 0 1 1 12 6c1.7 0 3.2.7 4.2 1.8L13 11h7V4l-2.3 2.3A8 8 0 0 0 12 4z',
  menu: 'M12 7a2 2 0 1 0 0-4 2 2 0 0 0 0 4zm0 2a2 2 0 1 0 0 4 2 2 0 0 0 0-4zm0 8a2 2 0 1 0 0 4 2 2 0 0 0 0-4z',
  search: 'M15.5 14h-.8l-.3-.3A6.5 6.5 0 1 0 14 15.5l.3.3v.8l5 5 1.5-1.5-5-5zm-6 0a4.5 4.5 0 1 1 0-9 4.5 4.5 0 0 1 0 9z',
  'lock-small': 'M8 5V4a4 4 0 1 1 8 0v1h1v8H7V5h1zm2 0h4V4a2 2 0 1 0-4 0v1z',
  'new-chat-outline': 'M4 4h16v12H6l-2 2V4zm7 3v2H9v2h2v2h2v-2h2V9h-2V7h-2z',
  send: 'M2 21l21-9L2 3v7l15 2-15 2z',
  'wds-ic-send-filled': 'M2 21l21-9L2 3v7l15 2-15 2z',
  'msg-check': 'M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4z',
  'msg-dblcheck': 'M1 13l5 5 1.4-1.4-5-5zm5.8 0 5 5L23 6.8l-1.4-1.4L11.8 15.2l-3.6-3.6zM18 6.8l-1.4-1.4-6.3 6.3 1.4 1.4z',
  'msg-time': 'M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm1 5h-2v6l5 3 1-1.7-4-2.3z',
};

/* el('div', {class: 'x', onclick: f, title: null}, child, 'text'): attributes whose value is
 * null or undefined are left out (so that version-dependent markup reads plainly). */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

export function icon(name, attrs) {
  const span = el('span', { 'data-icon': name, ...(attrs || {}) });
  const path = PATHS[name] || 'M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20z';
  span.innerHTML = `<svg viewBox="0 0 24 24" width="24" height="24"><path fill="currentColor" d="${path}"></path></svg>`;
  return span;
}
