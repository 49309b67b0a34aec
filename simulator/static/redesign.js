/* A WhatsApp Web build the product has never seen (the phone side's /_phone/redesign): an
 * app shell with ids, roles, aria-labels and data-icons of its own and NONE of the markers
 * in whatsapp-web.md: no div[data-ref], no progress bar or loading text, no #pane-side, no
 * "Chat list", no dialog, no unsupported-browser text, no #main. It is a test control: the
 * product must call it unrecognized_page, never key on it. Its chat names and previews are
 * plain text (one long preview also sits in an aria-label, as a build might put it there),
 * so that a test can check the kept outline holds no message text. */
import { el, icon } from './dom.js';

// Shown in the rows; tests look for these words in what the product saved.
export const PREVIEWS = [
  ['Carol', 'The parcel is at the front desk, ring twice when you arrive please'],
  ['+1 555-000-2222', 'Dinner moved to eight'],
];

function navButton(label, name) {
  return el('button', { type: 'button', 'aria-label': label, class: 'nav' }, icon(name));
}

/* The new layout's whole DOM, to replace the page's. */
export function shell() {
  const rows = PREVIEWS.map(([name, preview], i) => el('div', {
    role: 'option', 'aria-selected': i === 0 ? 'true' : 'false', tabindex: '-1',
    // The first row's label carries its preview, longer than any UI label (the kept
    // outline drops such labels); the other row's text is only text.
    'aria-label': i === 0 ? `${name}, ${preview}, 10:40` : null,
  }, el('div', { class: 'thread-name' }, name), el('div', { class: 'thread-preview' }, preview)));
  return el('div', { id: 'wa-shell', role: 'application', 'aria-label': 'WhatsApp', class: 'shell' },
    el('nav', { id: 'wa-rail', role: 'navigation', 'aria-label': 'Navigation' },
      navButton('Chats', 'wds-ic-chat-filled'), navButton('Updates', 'wds-ic-status-outline'),
      navButton('Communities', 'wds-ic-community-outline'), navButton('Settings', 'wds-ic-settings-outline')),
    el('section', { id: 'wa-threads', role: 'region', 'aria-label': 'Conversations' },
      el('header', {}, el('h1', {}, 'Chats'),
        el('label', {}, icon('wds-ic-search'), el('input', { type: 'search', 'aria-label': 'Search', placeholder: 'Ask or search' }))),
      el('div', { id: 'wa-thread-list', role: 'listbox', 'aria-label': 'Threads' }, ...rows)),
    el('section', { id: 'wa-stage', role: 'main', 'aria-label': 'Stage' },
      el('p', {}, icon('wds-ic-lock-small'), ' Select a conversation to start')));
}
