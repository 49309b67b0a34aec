/* The chat list inside div[aria-label="Chat list"]: one row per chat ([role="listitem"] in
 * 2026, [role="row"] in 2025), the title in span[title], the last message with its ticks
 * (status-* icons, so that msg-* ones are only in message rows) and, for unread incoming
 * messages, span[aria-label="N unread message(s)"]. Rows are keyed by chat and reused: a
 * row element found once stays that row while its content and position change. */
import { el, icon } from './dom.js';
import * as mk from './markup.js';

function content(entry) {
  const m = entry.last;
  const preview = el('span', { class: 'preview', dir: 'ltr' });
  if (m.out) preview.append(mk.listAckIcon(m.ack), ' ');
  if (m.kind === 'image') preview.append(icon('status-image'), ' Photo');
  else preview.append(m.text.replace(/\s+/g, ' ').slice(0, 120));
  return el('div', { class: 'chatrow' }, el('div', { class: 'avatar' }),
    el('div', { class: 'cell' },
      el('div', { class: 'line' }, el('span', { title: entry.title, dir: 'auto', class: 'name' }, entry.title),
        el('small', {}, mk.listWhen(m.t))),
      el('div', { class: 'line' }, preview, ...(entry.unread ? [mk.badge(entry.unread)] : []))));
}

/* A drawer for `list`; call it with the entries ({id, title, unread, last}) in order, most
 * recent first, and the open chat's id. A click on a row calls onOpen(id). */
export function chatList(list, onOpen) {
  const rows = new Map();
  return (entries, openId) => {
    entries.forEach((entry, i) => {
      let row = rows.get(entry.id);
      if (!row) {
        row = el('div', { role: mk.LIST_ROLE, tabindex: '-1', class: 'chat', onclick: () => onOpen(entry.id) });
        rows.set(entry.id, row);
      }
      const sig = JSON.stringify([entry.title, entry.last.id, entry.last.ack, entry.last.t, entry.unread]);
      if (row.sig !== sig) { row.replaceChildren(content(entry)); row.sig = sig; }
      row.setAttribute('aria-selected', String(entry.id === openId));
      if (!mk.V2026) row.setAttribute('aria-rowindex', String(i + 1));
      if (list.children[i] !== row) list.insertBefore(row, list.children[i] || null);
    });
    while (list.children.length > entries.length) list.lastElementChild.remove();
    if (!mk.V2026) list.setAttribute('aria-rowcount', String(entries.length));
  };
}
