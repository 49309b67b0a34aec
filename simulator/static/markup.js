/* What differs between the WhatsApp Web builds the simulator mirrors (--web-version), and
 * the markup of chat-list rows and message rows. Markers as in whatsapp-web.md:
 *   2026: row data-id a bare id; text span[data-testid="selectable-text"] with build-hash
 *         classes + copyable-text; button[aria-label="Send"] > wds-ic-send-filled; chat
 *         list rows [role="listitem"]; a 24-hour clock.
 *   2025: data-id true_/false_<digits>@c.us_<id>; span.selectable-text.copyable-text;
 *         a plain button > span[data-icon="send"]; chat list rows [role="row"]; 12-hour
 *         clock ("8:05 pm").
 * Layout classes (msg, bubble, meta...) are for the style sheet only. */
import { el, icon } from './dom.js';

const CONFIG = window.__waSim || { webVersion: 2026, pushname: '' };
export const V2026 = CONFIG.webVersion >= 2026;
export const PUSHNAME = CONFIG.pushname;
export const LIST_ROLE = V2026 ? 'listitem' : 'row';
export const LIST_CONTAINER_ROLE = V2026 ? 'list' : 'grid';

const hex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)),
  (b) => b.toString(16).padStart(2, '0')).join('').toUpperCase();
// Class names that change with every "build" (each page load), as WhatsApp's do.
const hash = () => `x${Math.random().toString(36).slice(2, 9)}`;
const TEXT_CLASS = V2026 ? `${hash()} ${hash()} copyable-text` : `_${hash().slice(1, 6)} selectable-text copyable-text`;

/* A new outgoing message's id, made by the page when the message is typed (22 hex). */
export function newMessageId() { return `3EB0${hex(9)}`; }

export function dataId(m) {
  return V2026 ? m.id : `${m.out ? 'true' : 'false'}_${m.chat}@c.us_${m.id}`;
}

/* The number as WhatsApp shows it (the server does the same: chats.format_number). */
export function formatNumber(d) {
  if (d.length === 11 && d.startsWith('1')) return `+1 ${d.slice(1, 4)}-${d.slice(4, 7)}-${d.slice(7)}`;
  if (d.length === 12 && d.startsWith('91')) return `+91 ${d.slice(2, 7)} ${d.slice(7)}`;
  return `+${d}`;
}

// ---- times ------------------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, '0');
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

export function clock(t) {
  const d = new Date(t);
  if (V2026) return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return `${d.getHours() % 12 || 12}:${pad(d.getMinutes())} ${d.getHours() < 12 ? 'am' : 'pm'}`;
}

export function dateText(t) {
  const d = new Date(t);
  return `${pad(d.getDate())}/${pad(d.getMonth() + 1)}/${d.getFullYear()}`;
}

export function dayKey(t) {
  const d = new Date(t);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

function daysAgo(t) {
  const a = new Date(t); const b = new Date();
  a.setHours(0, 0, 0, 0); b.setHours(0, 0, 0, 0);
  return Math.round((b - a) / 86400000);
}

/* Date separator text: TODAY, YESTERDAY, a weekday within the week, else the date. */
export function dayLabel(t) {
  const n = daysAgo(t);
  if (n === 0) return 'TODAY';
  if (n === 1) return 'YESTERDAY';
  if (n > 1 && n < 7) return DAYS[new Date(t).getDay()].toUpperCase();
  return dateText(t);
}

/* The time a chat-list row shows for its last message. */
export function listWhen(t) {
  const n = daysAgo(t);
  if (n === 0) return clock(t);
  if (n === 1) return 'Yesterday';
  if (n > 1 && n < 7) return DAYS[new Date(t).getDay()];
  return dateText(t);
}

// ---- pieces -----------------------------------------------------------------------------

const ACKS = {
  pending: ['msg-time', ' Pending '], sent: ['msg-check', ' Sent '],
  delivered: ['msg-dblcheck', ' Delivered '], read: ['msg-dblcheck', ' Read '],
};

export function ackIcon(ack) {
  const [name, label] = ACKS[ack] || ACKS.pending;
  return icon(name, { 'aria-label': label, class: ack === 'read' ? 'ack read' : 'ack' });
}

/* The chat list's own tick icons (status-*), so that msg-* icons are only in message rows. */
export function listAckIcon(ack) {
  const name = { pending: 'status-time', sent: 'status-check' }[ack] || 'status-dblcheck';
  return icon(name, { class: ack === 'read' ? 'ack read' : 'ack' });
}

/* The text as text; links become <a> elements whose text is the URL. */
function textSpan(text) {
  const inner = el('span', {});
  for (const part of text.split(/(https?:\/\/[^\s]+)/)) {
    if (/^https?:\/\//.test(part)) inner.append(el('a', { href: part, target: '_blank', rel: 'noopener noreferrer' }, part));
    else if (part) inner.append(part);
  }
  return el('span', { dir: 'auto', 'data-testid': V2026 ? 'selectable-text' : null, class: TEXT_CLASS }, inner);
}

export function sendButton(onclick) {
  const name = V2026 ? 'wds-ic-send-filled' : 'send';
  return el('button', { type: 'button', 'aria-label': V2026 ? 'Send' : null, 'data-tab': '11', class: 'action', onclick }, icon(name));
}

export function micButton() {
  return el('button', { type: 'button', 'aria-label': V2026 ? 'Voice message' : null, class: 'action' },
    icon(V2026 ? 'wds-ic-mic-filled' : 'ptt'));
}

/* One message row: [role=row] > div[data-id] > div.message-in|out > bubble. A text bubble
 * holds div.copyable-text[data-pre-plain-text] with the text span; a photo has neither. The
 * time shown is a sibling of the text, with the ack icon after it on outgoing rows. */
export function messageRow(m, sender) {
  const parts = [];
  if (m.kind === 'image') {
    parts.push(el('div', { class: 'media' }, icon('media-image')));
  } else {
    parts.push(el('div', { class: 'copyable-text', 'data-pre-plain-text': `[${clock(m.t)}, ${dateText(m.t)}] ${sender}: ` },
      el('div', { class: 'text' }, textSpan(m.text))));
  }
  const meta = el('div', { class: 'meta' }, el('span', { dir: 'auto', class: 'time' }, clock(m.t)));
  if (m.out) meta.append(ackIcon(m.ack));
  parts.push(meta);
  return el('div', { role: 'row' },
    el('div', { 'data-id': dataId(m), class: 'item', tabindex: '-1' },
      el('div', { class: `${m.out ? 'message-out' : 'message-in'} msg` }, el('div', { class: 'bubble' }, ...parts))));
}

export function setAck(row, ack) {
  const old = row.querySelector('.meta span[data-icon]');
  if (old) old.replaceWith(ackIcon(ack));
}

/* Rows that are not messages: a date, the encryption notice, the unread divider. */
export function separatorRow(text) {
  return el('div', { role: 'row' }, el('div', { class: 'sep' }, el('span', {}, text)));
}

export function noticeRow() {
  return el('div', { role: 'row' }, el('div', { class: 'sys' }, icon('lock-small'),
    el('span', {}, 'Messages and calls are end-to-end encrypted. Only people in this chat can read, listen to, or share them. Click to learn more.')));
}

export function unreadRow(n) {
  return separatorRow(`${n} UNREAD MESSAGE${n === 1 ? '' : 'S'}`);
}

export function badge(n) {
  return el('span', { 'aria-label': `${n} unread message${n === 1 ? '' : 's'}`, class: 'badge' }, String(n));
}
