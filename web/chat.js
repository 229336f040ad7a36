// SPDX-License-Identifier: MIT
/**
 * @file Chat: the history and the `#chat-log` list, the unread badge, and sending a text on the peers' data
 * channels.
 */

export class ChatLog {
  /**
   * @param {object} o
   * @param {Record<string, HTMLElement>} o.el The page elements (`findElements()` in ui.js).
   * @param {object} o.state The page state.
   * @param {Map<string, import('./peer-link.js').PeerLink>} o.links One PeerLink per remote peer.
   */
  constructor({ el, state, links }) {
    Object.assign(this, { el, state, links });
    /** History: {seq, from, name, text, direction: 'in'|'out'|'system', via, ts, to?} */
    this.entries = [];
    this.seq = 0;
  }

  /** Adds a message to the history and the list; counts it as unread when the chat is hidden. */
  add(entry) {
    const msg = { seq: ++this.seq, ts: Date.now(), ...entry };
    this.entries.push(msg);
    if (this.entries.length > 500) this.entries.shift();
    const li = document.createElement('li');
    li.className = `chat-msg chat-${msg.direction}`;
    li.dataset.direction = msg.direction;
    li.dataset.seq = String(msg.seq);
    li.dataset.via = msg.via ?? '';
    if (msg.from) li.dataset.from = msg.from;
    li.dataset.text = msg.text;
    if (msg.direction !== 'system') {
      const who = document.createElement('span');
      who.className = 'chat-who';
      who.textContent = msg.direction === 'out' ? 'You' : msg.name;
      const time = document.createElement('time');
      time.className = 'chat-time';
      time.dateTime = new Date(msg.ts).toISOString();
      time.textContent = new Date(msg.ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      const head = document.createElement('div');
      head.className = 'chat-meta';
      head.append(who, time);
      li.append(head);
    }
    const text = document.createElement('p');
    text.className = 'chat-text';
    text.textContent = msg.text;
    li.append(text);
    const log = this.el.chatLog;
    log.append(li);
    while (log.childElementCount > 500) log.firstElementChild.remove();
    log.scrollTop = log.scrollHeight;
    if (msg.direction === 'in' && !this._visible()) {
      this.state.unread += 1;
      this._renderUnread();
    }
    return msg;
  }

  /**
   * Sends a chat text on every open data channel (or only to `to`).
   * @returns {number} How many peers it was sent to.
   */
  send(text, to) {
    const t = String(text ?? '').trim();
    if (!t) return 0;
    let sent = 0;
    for (const [id, link] of this.links) {
      if (to && id !== to) continue;
      if (link.sendChat(t)) sent += 1;
    }
    const state = this.state;
    if (sent) this.add({ from: state.selfId, name: state.name || 'You', text: t, direction: 'out', via: 'datachannel', to: to ?? null, recipients: sent });
    else this.add({ text: this.links.size ? 'Not sent: no chat connection is open yet.' : 'Not sent: nobody else is here yet.', direction: 'system', via: 'local' });
    return sent;
  }

  clearUnread() {
    this.state.unread = 0;
    this._renderUnread();
  }

  _visible() {
    return !window.matchMedia('(max-width: 900px)').matches || this.state.chatOpenMobile;
  }

  _renderUnread() {
    const unread = this.state.unread;
    this.el.chatUnread.hidden = unread === 0;
    this.el.chatUnread.textContent = unread > 9 ? '9+' : String(unread);
  }
}
