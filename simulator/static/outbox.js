/* Messages typed but not yet taken by the server, kept in the browser's own storage
 * (IndexedDB database "model-storage", store "message", as WhatsApp Web keeps its models),
 * so that a message typed offline survives a reload or a browser restart on the same
 * profile and goes out once the connection is back.
 *
 * add() records a message at once in memory (the page draws it with the clock right away)
 * and returns the promise of its write to disk; remove() once the server has it. The
 * server dedupes on the message id, so a send that may or may not have arrived is simply
 * sent again. */

const DB = 'model-storage';
const STORE = 'message';
const pending = new Map(); // id -> {id, to, text, t}

function open() {
  return new Promise((resolve, reject) => {
    const q = indexedDB.open(DB, 1);
    q.onupgradeneeded = () => q.result.createObjectStore(STORE, { keyPath: 'id' });
    q.onsuccess = () => resolve(q.result);
    q.onerror = () => reject(q.error);
    q.onblocked = () => reject(new Error('blocked'));
  });
}

async function run(mode, work) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode, { durability: 'strict' });
      const result = work(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(result && result.result);
      tx.onerror = tx.onabort = () => reject(tx.error);
    });
  } finally { db.close(); }
}

/* Read what a previous page left (once per page). */
export async function load() {
  try {
    const recs = await run('readonly', (store) => store.getAll());
    for (const rec of recs || []) pending.set(rec.id, rec);
  } catch (e) { /* storage unreadable: nothing pending */ }
}

export function all() {
  return [...pending.values()].sort((a, b) => a.t - b.t);
}

export function forChat(chat) {
  return all().filter((rec) => rec.to === chat);
}

export function has(id) { return pending.has(id); }

export function add(rec) {
  pending.set(rec.id, rec);
  return run('readwrite', (store) => store.put(rec)).catch(() => {});
}

export async function remove(id) {
  pending.delete(id);
  try { await run('readwrite', (store) => store.delete(id)); } catch (e) { /* gone with the profile */ }
}

/* A new login, or the login gone: nothing typed under another one may go out. */
export function wipe() {
  pending.clear();
  return new Promise((resolve) => {
    const q = indexedDB.deleteDatabase(DB);
    q.onsuccess = q.onerror = q.onblocked = () => resolve();
  });
}
