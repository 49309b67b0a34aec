/* Chats on the page: the list in div[aria-label="Chat list"], the open chat in #main,
 * sending (through outbox.js), reads, and the live updates the poll brings.
 *
 * - The server holds the conversations (/_wa/chats, /_wa/chat); this page keeps what it
 *   has seen in `c.msgs` and adds its own pending messages (outbox.js) to what it shows.
 * - /send?phone=&text=: once the chat list is loaded, that chat opens in #main with the
 *   text in the compose box (the address becomes "/"); a number that is not on WhatsApp
 *   gets the "Phone number shared via url is invalid." dialog instead.
 * - Opening a chat (a click on its row, or /send) marks its incoming messages read; so
 *   does a message arriving in the chat that is open.
 * - Rows are drawn keyed by message id and reused, so an element found once stays the same
 *   element while its ticks change (chat-list rows likewise: chatlist.js). */
import { el, icon } from './dom.js';
import * as mk from './markup.js';
import * as outbox from './outbox.js';
import { chatList } from './chatlist.js';
import { composer } from './compose.js';

const NUMBER = /^[1-9]\d{5,14}$/;

const c = {
  device: null, dialogs: null, started: false, loading: false,
  mseq: null, // the last conversation change applied; null until the list is loaded
  chats: new Map(), // id -> summary {id, title, unread, last}
  msgs: new Map(), // id -> message as the server has it
  loaded: new Set(), // chats whose whole history is in msgs
  drawList: null, pane: null,
  open: null, // {id, main, messages, rows, comp, title, unread}
  intent: readIntent(),
  flushing: false, again: false, reads: new Set(),
};

function readIntent() {
  if (location.pathname !== '/send') return null;
  const q = new URLSearchParams(location.search);
  return { phone: (q.get('phone') || '').replace(/\D/g, ''), text: q.get('text') || '' };
}

async function api(method, path, body) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 10000);
  try {
    const r = await fetch(path, {
      method, cache: 'no-store', signal: ctl.signal,
      headers: body ? { 'Content-Type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    return { status: r.status, data };
  } finally { clearTimeout(timer); }
}

// ---- the model ----------------------------------------------------------------------

function ingest(m) {
  const old = c.msgs.get(m.id);
  if (!old || m.seq > old.seq) c.msgs.set(m.id, m);
}

function takeSummary(s) {
  c.chats.set(s.id, s);
  if (s.last) ingest(s.last);
}

function summaryOf(id) {
  return c.chats.get(id) || { id, title: mk.formatNumber(id), unread: 0, last: null };
}

const pendingView = (rec) => ({
  id: rec.id, chat: rec.to, out: true, text: rec.text, kind: 'text', ack: 'pending', read: false,
  t: rec.t, n: Infinity, seq: -1,
});

const order = (a, b) => a.t - b.t || a.n - b.n;

function chatMessages(id) {
  const list = [...c.msgs.values()].filter((m) => m.chat === id);
  for (const rec of outbox.forChat(id)) if (!c.msgs.has(rec.id)) list.push(pendingView(rec));
  return list.sort(order);
}

function lastOf(id) {
  const list = chatMessages(id);
  return list.length ? list[list.length - 1] : null;
}

// ---- the chat list ----------------------------------------------------------------------

function renderList() {
  if (!c.drawList) return;
  const openId = c.open && c.open.id;
  const ids = new Set([...c.chats.keys(), ...outbox.all().map((rec) => rec.to)]);
  const entries = [...ids].map((id) => ({ id, last: lastOf(id) })).filter((e) => e.last)
    .sort((a, b) => order(b.last, a.last))
    .map(({ id, last }) => {
      const s = summaryOf(id);
      return { id, last, title: s.title, unread: id === openId ? 0 : s.unread };
    });
  c.drawList(entries, openId);
}

// ---- the open chat ----------------------------------------------------------------------

function showChat(id, prefill) {
  const s = summaryOf(id);
  const unread = chatMessages(id).filter((m) => !m.out && !m.read);
  const title = el('span', { dir: 'auto' }, s.title);
  const messages = el('div', { class: 'messages', role: 'application', tabindex: '-1' });
  const comp = composer((text) => sendText(id, text));
  const main = el('div', { id: 'main', class: 'main' },
    el('header', {}, el('div', { class: 'avatar' }), el('div', { class: 'title' }, title),
      el('div', { class: 'tools' }, icon('search-alt'))),
    messages, comp.footer);
  c.open = { id, main, messages, rows: new Map(), comp, title,
    unread: unread.length ? { before: unread[0].id, n: unread.length } : null };
  c.pane.replaceChildren(main);
  renderRows(true);
  if (prefill) comp.setText(prefill); else comp.box.focus();
}

function renderRows(toBottom) {
  const o = c.open;
  if (!o) return;
  const s = summaryOf(o.id);
  if (o.title.textContent !== s.title) o.title.textContent = s.title;
  const desired = [];
  const keep = (key, make) => {
    let node = o.rows.get(key);
    if (!node) { node = make(); o.rows.set(key, node); }
    desired.push([key, node]);
    return node;
  };
  keep('notice', mk.noticeRow);
  let day = null;
  for (const m of chatMessages(o.id)) {
    const dk = mk.dayKey(m.t);
    if (dk !== day) {
      day = dk;
      const label = mk.dayLabel(m.t);
      keep(`day:${dk}:${label}`, () => mk.separatorRow(label));
    }
    if (o.unread && o.unread.before === m.id) keep('unread', () => mk.unreadRow(o.unread.n));
    const node = keep(`m:${m.id}`, () => mk.messageRow(m, m.out ? mk.PUSHNAME : s.title));
    if (m.out && node.ack !== m.ack) {
      if (node.ack !== undefined) mk.setAck(node, m.ack);
      node.ack = m.ack;
    }
  }
  const box = o.messages;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  desired.forEach(([, node], i) => {
    if (box.children[i] !== node) box.insertBefore(node, box.children[i] || null);
  });
  while (box.children.length > desired.length) box.lastElementChild.remove();
  const keys = new Set(desired.map(([key]) => key));
  for (const key of [...o.rows.keys()]) if (!keys.has(key)) o.rows.delete(key);
  if (toBottom || atBottom) box.scrollTop = box.scrollHeight;
}

function render() {
  renderList();
  renderRows(false);
}

function invalidNumber() {
  c.dialogs.show('invalid', el('div', {}, 'Phone number shared via url is invalid.'),
    el('div', {}, el('button', { type: 'button', onclick: () => c.dialogs.close() }, 'OK')));
}

async function loadHistory(id) {
  let r = null;
  try { r = await api('GET', `/_wa/chat?device=${c.device}&with=${id}`); } catch (e) { r = null; }
  if (!r) return 'offline'; // show what is known
  if (r.status !== 200) return r.status === 404 || r.status === 400 ? 'invalid' : 'offline';
  for (const m of r.data.messages) ingest(m);
  if (r.data.chat.last || !c.chats.has(id)) c.chats.set(id, r.data.chat);
  c.loaded.add(id);
  return 'ok';
}

async function openChat(id, prefill) {
  if (c.open && c.open.id === id && !prefill) { markRead(id); return; }
  if (!c.loaded.has(id) && (await loadHistory(id)) === 'invalid') { invalidNumber(); return; }
  showChat(id, prefill);
  markRead(id);
  renderList();
}

function markRead(id) {
  let any = summaryOf(id).unread > 0;
  for (const m of c.msgs.values()) {
    if (m.chat === id && !m.out && !m.read) { m.read = true; any = true; }
  }
  if (!any) return;
  if (c.chats.has(id)) c.chats.get(id).unread = 0;
  c.reads.add(id);
  flushReads();
}

async function flushReads() {
  for (const id of [...c.reads]) {
    try {
      const r = await api('POST', '/_wa/read', { device: c.device, chat: id });
      if (r.status < 500) c.reads.delete(id);
    } catch (e) { return; } // offline: online() tries again
  }
}

// ---- sending ----------------------------------------------------------------------------

function sendText(chat, text) {
  const rec = { id: mk.newMessageId(), to: chat, text, t: Date.now() };
  const stored = outbox.add(rec); // in memory at once: the row shows the clock now
  render();
  stored.then(flush);
}

/* Send what is pending, oldest first, one at a time; stop at the first network failure
 * (the poll loop calls online() when the connection is back). */
async function flush() {
  if (c.flushing) { c.again = true; return; }
  c.flushing = true;
  try {
    do {
      c.again = false;
      for (const rec of outbox.all()) {
        let r;
        try {
          r = await api('POST', '/_wa/send', { device: c.device, to: rec.to, text: rec.text, id: rec.id, t: rec.t });
        } catch (e) { return; }
        if (r.status === 401 || r.status >= 500) return; // unlinked (the poll notices) or later
        if (r.status === 200) ingest(r.data.message);
        await outbox.remove(rec.id); // stored, or refused for good: nothing to retry
        render();
      }
    } while (c.again);
  } finally { c.flushing = false; }
}

// ---- loading and live updates -------------------------------------------------------------

async function loadList() {
  if (c.loading) return;
  c.loading = true;
  try {
    const r = await api('GET', `/_wa/chats?device=${c.device}`);
    if (r.status !== 200) return;
    c.chats = new Map();
    r.data.chats.forEach(takeSummary);
    c.mseq = r.data.mseq;
    if (c.open && !c.loaded.has(c.open.id)) await loadHistory(c.open.id);
    render();
    const intent = c.intent;
    c.intent = null;
    if (intent) {
      history.replaceState(null, '', '/');
      if (NUMBER.test(intent.phone)) await openChat(intent.phone, intent.text);
      else if (intent.phone) invalidNumber();
    }
  } catch (e) { /* offline: online() tries again */ } finally { c.loading = false; }
}

/* The login is known: `device` is this page's linked device; `dialogs` = {show, close}. */
export function start(device, dialogs) {
  c.device = device;
  c.dialogs = dialogs;
}

/* The chat screen was (re)built: draw into its list and right pane. */
export function mount(list, pane) {
  c.drawList = chatList(list, openChat);
  c.pane = pane;
  const open = c.open && c.open.id;
  c.open = null;
  renderList();
  if (open) showChat(open);
  if (!c.started) {
    c.started = true;
    outbox.load().then(loadList).then(flush);
  }
}

export function mseq() { return c.mseq; }

/* A poll answer for this linked page. */
export function apply(snap) {
  if (c.mseq === null || snap.mseq === undefined) return;
  if (snap.resync) {
    c.mseq = null; // no more updates until the lists are loaded again
    c.msgs.clear();
    c.loaded.clear();
    loadList();
    return;
  }
  c.mseq = Math.max(c.mseq, snap.mseq);
  if (!snap.updates) return;
  snap.updates.chats.forEach(takeSummary);
  snap.updates.messages.forEach(ingest);
  if (c.open) markRead(c.open.id); // a message arriving in the open chat is read at once
  render();
}

/* The connection works (a poll answered): retry whatever waited for it. */
export function online() {
  if (!c.started) return;
  if (c.mseq === null) loadList();
  if (outbox.all().length) flush();
  if (c.reads.size) flushReads();
}

/* A new login or none: what this browser typed under another must never go out. */
export function forget() {
  return outbox.wipe();
}
