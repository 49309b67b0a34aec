/* The simulated WhatsApp Web page: screens, the login kept in browser storage, and the
 * live connection (a long-poll on /_wa/poll). Markers mirror whatsapp-web.md; see
 * simulator/__init__.py for the screens and flows. Chats and messages: chat.js. The
 * redesigned layout (a test control): redesign.js. */
import { el, icon } from './dom.js';
import { LIST_CONTAINER_ROLE } from './markup.js';
import * as chat from './chat.js';
import * as redesign from './redesign.js';

const root = document.getElementById('app');
const PAGE = Array.from(crypto.getRandomValues(new Uint8Array(12)),
  (b) => b.toString(16).padStart(2, '0')).join('');
const DB = 'wawc';
const STORE = 'user';
const QR_SIZE = 228;
const QUIET = 4;
const s = {
  screen: null, version: 0, login: null, conflictSeen: 0, offline: false, leaving: false,
  qr: null, qrKind: null, drawn: null, wake: null, dialog: null, menu: null,
};
const screenBox = document.createElement('div');
const layer = document.createElement('div');
root.append(screenBox, layer);

// ---- small helpers --------------------------------------------------------------

function delay(ms) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    s.wake = () => { clearTimeout(t); resolve(); };
  });
}

async function post(path, body) {
  const r = await fetch(path, {
    method: 'POST', cache: 'no-store',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body || {}),
  });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  return { status: r.status, data };
}

function readJSON(key) {
  try { return JSON.parse(localStorage.getItem(key)); } catch (e) { return null; }
}

// ---- the login in browser storage -------------------------------------------------

function idbOpen() {
  return new Promise((resolve, reject) => {
    const q = indexedDB.open(DB, 1);
    q.onupgradeneeded = () => q.result.createObjectStore(STORE);
    q.onsuccess = () => resolve(q.result);
    q.onerror = () => reject(q.error);
    q.onblocked = () => reject(new Error('blocked'));
  });
}

async function idbGet() {
  try {
    const db = await idbOpen();
    try {
      return await new Promise((resolve, reject) => {
        const q = db.transaction(STORE).objectStore(STORE).get('device');
        q.onsuccess = () => resolve(q.result || null);
        q.onerror = () => reject(q.error);
      });
    } finally { db.close(); }
  } catch (e) { return null; }
}

async function idbPut(value) {
  const db = await idbOpen();
  try {
    await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, 'readwrite', { durability: 'strict' });
      tx.objectStore(STORE).put(value, 'device');
      tx.oncomplete = resolve;
      tx.onerror = tx.onabort = () => reject(tx.error);
    });
  } finally { db.close(); }
}

function idbDelete() {
  return new Promise((resolve) => {
    const q = indexedDB.deleteDatabase(DB);
    q.onsuccess = q.onerror = q.onblocked = () => resolve();
  });
}

async function storeLogin(c) {
  await idbPut({ device: c.device, secret: c.secret });
  localStorage.setItem('WANoiseInfo', c.noise);
  localStorage.setItem('last-pushname', JSON.stringify(c.pushname));
  localStorage.setItem('mobile-platform', JSON.stringify(c.platform));
  localStorage.setItem('last-wid-md', JSON.stringify(c.wid));
}

/* The login is gone (phone logout or our own "Log out"): clear it, show a fresh QR. */
async function leave() {
  if (s.leaving) return;
  s.leaving = true;
  localStorage.clear();
  await idbDelete();
  await chat.forget();
  location.replace('/?post_logout=1');
}

async function logoutHere() {
  if (s.login) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), 3000);
    try {
      await fetch('/_wa/logout', {
        method: 'POST', signal: ctl.signal, headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ wid: s.login.wid, secret: s.login.secret }),
      });
    } catch (e) { /* offline: the phone keeps the entry, as for real */ }
    clearTimeout(t);
  }
  await leave();
}

// ---- screens ----------------------------------------------------------------------

function show(screen, node) {
  s.screen = screen;
  s.menu = null;
  screenBox.replaceChildren(node);
  renderBanner();
}

function qrScreen() {
  s.qrRef = el('div', { 'data-ref': s.qr.payload });
  s.qrKind = null;
  s.drawn = null;
  show('qr', el('div', { class: 'landing' },
    el('div', {},
      el('h1', {}, 'Scan to log in'),
      el('ol', {},
        el('li', {}, 'Open WhatsApp on your phone'),
        el('li', {}, 'Tap Menu or Settings and select Linked devices'),
        el('li', {}, 'Tap Link a device'),
        el('li', {}, 'Point your phone at this screen to scan the QR code'))),
    s.qrRef));
}

function drawQR(canvas, rows) {
  const n = rows.length;
  const cell = Math.max(1, Math.floor(QR_SIZE / (n + 2 * QUIET)));
  const off = Math.floor((QR_SIZE - cell * n) / 2);
  const g = canvas.getContext('2d');
  g.fillStyle = '#ffffff';
  g.fillRect(0, 0, QR_SIZE, QR_SIZE);
  g.fillStyle = '#000000';
  rows.forEach((row, y) => {
    for (let x = 0; x < n; x += 1) {
      if (row[x] === '1') g.fillRect(off + x * cell, off + y * cell, cell, cell);
    }
  });
}

function renderQR() {
  if (s.screen !== 'qr') qrScreen();
  const ref = s.qrRef;
  ref.setAttribute('data-ref', s.qr.payload);
  const kind = s.offline ? 'offline' : (s.qr.expired ? 'expired' : 'code');
  if (kind === 'code') {
    if (s.qrKind !== 'code') {
      ref.replaceChildren(el('canvas', {
        'aria-label': 'Scan this QR code to link a device!', role: 'img',
        width: QR_SIZE, height: QR_SIZE,
      }));
      s.drawn = null;
    }
    if (s.drawn !== s.qr.payload) {
      drawQR(ref.querySelector('canvas'), s.qr.matrix);
      s.drawn = s.qr.payload;
    }
  } else if (s.qrKind !== kind) {
    const text = kind === 'offline' ? 'No internet connection' : 'Click to reload QR code';
    ref.replaceChildren(el('button', { type: 'button', onclick: reloadQR },
      el('div', {}, icon('refresh-large')), el('div', {}, text)));
  }
  s.qrKind = kind;
}

async function reloadQR() {
  if (s.offline) { if (s.wake) s.wake(); return; }
  try { await post('/_wa/qr/reload', { page: PAGE }); } catch (e) { /* the poll notices */ }
}

function loadingScreen() {
  s.bar = el('progress', { value: '0', max: '100' });
  s.loadingText = el('div', {}, 'Connecting…');
  show('loading', el('div', { class: 'startup' },
    el('div', {}, s.bar),
    s.loadingText,
    el('div', {}, icon('lock-small'), ' End-to-end encrypted'),
    el('button', { type: 'button', onclick: logoutHere }, 'Log out')));
}

function setLoading(text, pct) {
  if (s.screen !== 'loading') loadingScreen();
  s.loadingText.textContent = text;
  if (pct !== undefined) s.bar.value = pct;
}

function startSync(seconds) {
  const t0 = performance.now();
  const total = Math.max(0, seconds * 1000);
  const tick = () => {
    if (s.leaving) return;
    const pct = total ? Math.min(100, Math.floor(((performance.now() - t0) / total) * 100)) : 100;
    if (pct >= 100) { chatScreen(); return; }
    setLoading(`Loading your chats [${pct}%]`, pct);
    setTimeout(tick, 100);
  };
  tick();
}

function chatScreen() {
  const menuButton = el('div', { role: 'button', title: 'Menu', 'aria-label': 'Menu', tabindex: '0' }, icon('menu'));
  menuButton.addEventListener('click', () => toggleMenu(menuButton));
  const list = el('div', { 'aria-label': 'Chat list', role: LIST_CONTAINER_ROLE });
  s.side = el('div', { class: 'side' },
    el('header', {},
      el('div', {}),
      el('div', {}, el('div', { role: 'button', title: 'New chat', 'aria-label': 'New chat', tabindex: '0' }, icon('new-chat-outline')), menuButton)),
    el('input', { type: 'text', placeholder: 'Search or start a new chat', 'data-tab': '3' }),
    el('div', { id: 'pane-side' }, list));
  // The right pane: this intro until a chat opens there as #main.
  const pane = el('div', { class: 'pane' },
    el('div', { class: 'intro' },
      el('h1', {}, 'WhatsApp Web'),
      el('p', {}, 'Send and receive messages without keeping your phone online.'),
      el('p', {}, icon('lock-small'), ' Your personal messages are end-to-end encrypted')));
  show('chats', el('div', { class: 'two' }, s.side, pane));
  chat.mount(list, pane);
}

function toggleMenu(button) {
  if (s.menu) { s.menu.remove(); s.menu = null; return; }
  s.menu = el('ul', { role: 'application' },
    el('li', { role: 'button', tabindex: '-1' }, el('div', {}, 'Settings')),
    el('li', { role: 'button', tabindex: '-1', onclick: confirmLogout }, el('div', {}, 'Log out')));
  button.after(s.menu);
}

function showDialog(kind, ...content) {
  closeDialog();
  s.dialog = { kind, node: el('div', { class: 'overlay' }, el('div', { role: 'dialog' }, el('div', { 'data-animate-modal-popup': 'true' }, ...content))) };
  layer.append(s.dialog.node);
}

function closeDialog() {
  if (s.dialog) s.dialog.node.remove();
  s.dialog = null;
}

const DIALOGS = { show: showDialog, close: closeDialog };

function confirmLogout() {
  if (s.menu) { s.menu.remove(); s.menu = null; }
  showDialog('logout',
    el('h1', {}, 'Log out?'),
    el('div', {}, 'Are you sure you want to log out?'),
    el('div', {},
      el('button', { type: 'button', onclick: closeDialog }, 'Cancel'),
      el('button', { type: 'button', onclick: logoutHere }, 'Log out')));
}

function showConflict(seq) {
  showDialog('conflict',
    el('div', {}, 'WhatsApp is open in another window. Click “Use here” to use WhatsApp in this window.'),
    el('div', {},
      el('button', { type: 'button', onclick: logoutHere }, 'Log out'),
      el('button', { type: 'button', onclick: () => { s.conflictSeen = seq; closeDialog(); if (s.screen !== 'loading') chatScreen(); } }, 'Use here')));
}

/* Offline: on the QR screen the QR becomes the "No internet connection" button; on the
 * loading screen and the chat list a plain notice appears (its real markers are
 * unconfirmed, so it has none). */
function renderBanner() {
  const old = screenBox.querySelector('.notice');
  if (old) old.remove();
  if (!s.offline || (s.screen !== 'chats' && s.screen !== 'loading')) return;
  const notice = el('div', { class: 'notice' },
    el('div', {}, 'Computer not connected'),
    el('div', {}, 'Make sure your computer has an active Internet connection.'));
  if (s.screen === 'chats') s.side.querySelector('header').after(notice);
  else screenBox.prepend(notice);
}

function setOffline(on) {
  if (s.offline === on) return;
  s.offline = on;
  if (s.screen === 'qr') renderQR();
  renderBanner();
}

// ---- the redesigned layout (/_phone/redesign) ---------------------------------------

/* WhatsApp shipped a build we do not mirror: replace the whole page with its shell and stop
 * the usual loops. Storage is left exactly as it is (a new build keeps the login). The live
 * connection then only watches the flag; when it goes off the page reloads into the old
 * layout, as a rolled-back build would. */
async function showRedesign() {
  s.leaving = true; // ends pollLoop and keeps leave() from clearing anything
  closeDialog();
  root.replaceChildren(redesign.shell());
  let version = 0;
  for (;;) {
    let snap = null;
    try {
      const q = new URLSearchParams({ page: PAGE, since: String(version), watch: '1' });
      const r = await fetch(`/_wa/poll?${q}`, { cache: 'no-store' });
      if (r.ok) snap = await r.json();
    } catch (e) { snap = null; }
    if (!snap) { await delay(1000); continue; }
    version = snap.version;
    if (!snap.redesign) { location.reload(); return; }
  }
}

// ---- the live connection and start-up ---------------------------------------------

async function apply(snap) {
  if (snap.linked) {
    if (s.login) return;
    const c = snap.linked;
    s.login = { wid: c.wid, device: c.device, secret: c.secret };
    s.conflictSeen = c.conflict;
    await chat.forget(); // a new login: nothing typed under an earlier one may go out
    await storeLogin(c);
    chat.start(c.device, DIALOGS);
    startSync(c.sync_seconds);
  } else if (snap.device) {
    if (!snap.device.linked) { await leave(); return; }
    if (snap.conflict > s.conflictSeen && !(s.dialog && s.dialog.kind === 'conflict')) showConflict(snap.conflict);
    chat.apply(snap);
  } else if (snap.qr && !s.login) {
    s.qr = snap.qr;
    renderQR();
  }
}

async function pollLoop() {
  while (!s.leaving) {
    const q = new URLSearchParams({ page: PAGE, since: String(s.version) });
    if (s.login) q.set('device', String(s.login.device));
    if (s.login && chat.mseq() !== null) q.set('mseq', String(chat.mseq()));
    let snap = null;
    try {
      const r = await fetch(`/_wa/poll?${q}`, { cache: 'no-store' });
      if (r.ok) snap = await r.json();
    } catch (e) { snap = null; }
    if (s.leaving) return;
    if (!snap) { setOffline(true); await delay(1000); continue; }
    if (snap.redesign) { showRedesign(); return; }
    setOffline(false);
    s.version = snap.version;
    await apply(snap);
    if (s.login) chat.online();
  }
}

async function boot() {
  if (window.__waSim && window.__waSim.redesign) { showRedesign(); return; }
  const wid = readJSON('last-wid-md');
  if (typeof wid === 'string' && localStorage.getItem('WANoiseInfo')) {
    setLoading('Connecting…', 0);
    const key = await idbGet();
    for (;;) {
      let r = null;
      try { r = await post('/_wa/login', { wid, secret: key ? key.secret : null }); } catch (e) { r = null; }
      const status = r && r.status === 200 && r.data ? r.data.status : null;
      if (status === 'ok') {
        s.login = { wid, device: r.data.device, secret: key.secret };
        s.conflictSeen = r.data.conflict;
        chat.start(r.data.device, DIALOGS);
        startSync(r.data.sync_seconds);
        break;
      }
      if (status === 'unlinked') { await leave(); return; }
      if (status === 'mismatch') break; // not logged in; storage stays as it is
      setLoading('Connecting…');
      await delay(1000);
    }
  }
  pollLoop();
}

boot();
