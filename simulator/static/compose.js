/* The compose box of an open chat: footer div[contenteditable="true"][role="textbox"]
 * [data-tab="10"][aria-placeholder="Type a message"]. Typing, send_keys and
 * document.execCommand('insertText') work natively; Shift+Enter starts a new line, Enter
 * sends, and so does the send button, which exists only while the box holds text (a
 * microphone button instead when it is empty), as on the real page.
 *
 * The text sent is what the box shows, exactly: the box is white-space: pre-wrap (no
 * &nbsp; for repeated spaces) and boxText() reads Chromium's editing DOM back into text
 * (a <div> per line after the first, <br> for line breaks, <div><br></div> an empty line). */
import { el, icon } from './dom.js';
import { micButton, sendButton } from './markup.js';

const BLOCK = new Set(['DIV', 'P', 'LI', 'UL', 'OL', 'BLOCKQUOTE', 'PRE', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6']);

export function boxText(box) {
  let out = '';
  let needBreak = false;
  let started = false;
  const emit = (t) => {
    if (needBreak && started) out += '\n';
    needBreak = false;
    out += t;
    started = true;
  };
  const walk = (node) => {
    for (const c of node.childNodes) {
      if (c.nodeType === Node.TEXT_NODE) {
        if (c.data) emit(c.data);
      } else if (c.nodeName === 'BR') {
        // A <br> that ends its line is the editor's placeholder, not a character.
        const next = c.nextSibling;
        emit(!next || BLOCK.has(next.nodeName) ? '' : '\n');
      } else if (c.nodeType === Node.ELEMENT_NODE) {
        const block = BLOCK.has(c.nodeName);
        if (block) needBreak = true;
        walk(c);
        if (block) needBreak = true;
      }
    }
  };
  walk(box);
  return out;
}

/* The footer; `onSend(text)` gets what was in the box (the box is emptied first). */
export function composer(onSend) {
  const box = el('div', {
    contenteditable: 'true', role: 'textbox', 'data-tab': '10', 'aria-placeholder': 'Type a message',
    'aria-multiline': 'true', spellcheck: 'true', tabindex: '10', class: 'box',
  });
  const slot = el('div', { class: 'actions' });
  let showing = null;

  const update = () => {
    const text = boxText(box);
    if (!text) box.replaceChildren(); // back to :empty, so the placeholder shows
    const want = text.trim() ? 'send' : 'mic';
    if (want !== showing) {
      slot.replaceChildren(want === 'send' ? sendButton(send) : micButton());
      showing = want;
    }
  };
  function send() {
    const text = boxText(box);
    if (!text.trim()) return;
    box.replaceChildren();
    update();
    box.focus();
    onSend(text);
  }
  box.addEventListener('input', update);
  box.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' || e.isComposing) return;
    e.preventDefault();
    if (e.shiftKey) {
      document.execCommand('insertParagraph');
      update();
    } else {
      send();
    }
  });
  update();

  const footer = el('footer', {},
    el('div', { class: 'compose' },
      el('button', { type: 'button', title: 'Attach', class: 'action' }, icon('plus-rounded')),
      el('div', { class: 'input' }, box),
      slot));

  return {
    footer,
    box,
    /* Put `text` in the box (the /send prefill), the caret at its end. */
    setText(text) {
      box.replaceChildren(text);
      box.focus();
      const range = document.createRange();
      range.selectNodeContents(box);
      range.collapse(false);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      update();
    },
  };
}
