// SPDX-License-Identifier: MIT
/**
 * @file The call session: joining (URL, local media, the SignalingClient), hanging up and rejoining, the
 * status pill's signaling state, and join / connection errors.
 */
import { SignalingClient, ClientState, defaultSignalingUrl } from './signaling-client.js';
import { cleanName, validRoom } from './names.js';
import { END_SESSION_CLOSE_CODE } from './protocol.js';

const ERROR_TEXT = {
  'room-full': 'This room is full. Try again later or pick another room.',
  unauthorized: 'You are not allowed to join this room (missing, invalid or expired token).',
  'rate-limited': 'Too many messages: the server dropped one. Slow down a little.',
  'already-joined': 'Already in a room.',
};

export class CallSession {
  /**
   * @param {object} o
   * @param {object} o.state The page state.
   * @param {(level: string, msg: string, extra?: any) => void} o.log
   * @param {import('./ui.js').CallUI} o.ui
   * @param {import('./media.js').LocalMedia} o.media
   * @param {import('./mesh.js').Mesh} o.mesh
   * @param {import('./chat.js').ChatLog} o.chat
   */
  constructor({ state, log, ui, media, mesh, chat }) {
    Object.assign(this, { state, log, ui, media, mesh, chat });
    /** @type {SignalingClient|null} Created by the first join, then kept (it reconnects and rejoins). */
    this.client = null;
  }

  /** The SignalingClient state (`idle` before the first join). */
  get signalingState() {
    return this.client ? this.client.state : ClientState.IDLE;
  }

  renderStatus(extra) {
    this.ui.renderStatus(this.signalingState, extra);
  }

  /** Joins `room` (checked by the caller) as `name`, with or without camera and microphone. */
  join(room, name, { media }) {
    this.state.room = room;
    this.state.name = cleanName(name);
    this.state.wantMedia = media;
    return this.start();
  }

  /** Enters the call view, asks for local media, then connects (first time) or joins again. */
  async start() {
    const state = this.state;
    const ui = this.ui;
    ui.setView('call');
    state.inCall = true;
    this.chat.clearUnread();
    ui.hideNotice();
    ui.renderRoom();
    const url = new URL(location.href);
    url.searchParams.set('room', state.room);
    if (state.name) url.searchParams.set('name', state.name);
    else url.searchParams.delete('name');
    if (state.wantMedia) url.searchParams.delete('media');
    else url.searchParams.set('media', 'off');
    history.replaceState(null, '', url);

    state.media = 'pending';
    ui.showMediaPending();
    this._stopMedia(); // a retry after a failed join must not leave the previous camera running
    await this.media.start();
    if (!state.inCall) { this._stopMedia(); return; } // hung up while the permission prompt was open
    state.audioMuted = false;
    state.videoOff = false;
    ui.showSelf(this.media.stream);
    ui.renderMedia(this.media);

    if (!this.client) {
      this.client = this._makeClient();
      this.renderStatus();
      this.client.connect();
    } else {
      this.client.join({ room: state.room, name: state.name || undefined }).catch(() => { /* shown by the error event */ });
    }
  }

  hangUp() {
    const state = this.state;
    if (state.view !== 'call') return;
    state.inCall = false;
    this.client?.leave();
    this.mesh.removeAll();
    this._stopMedia();
    state.media = 'stopped';
    this.ui.renderMedia(this.media);
    this.ui.hideNotice();
    this.ui.showLeft();
  }

  rejoin() {
    if (!validRoom(this.state.room)) return;
    this.ui.hideNotice();
    if (this.state.view === 'call' && this.state.inCall) return;
    this.start();
  }

  /** Reconnects when the browser is back online; leaves promptly when the page goes away. */
  watchPage() {
    window.addEventListener('online', () => this.client?.reconnectNow());
    window.addEventListener('pagehide', () => {
      // Leave promptly so the others see peer-left now rather than after a timeout.
      this.client?.close(END_SESSION_CLOSE_CODE, 'page closed');
      this.mesh.closeAll();
    });
    window.addEventListener('pageshow', (ev) => {
      if (ev.persisted) location.reload();
    });
  }

  _stopMedia() {
    this.media.stop();
    this.ui.clearSelfVideo();
  }

  _makeClient() {
    const state = this.state;
    const c = new SignalingClient(defaultSignalingUrl(location), {
      room: state.room,
      name: state.name || undefined,
      token: state.token,
      meta: { client: 'web' },
      reconnect: { minDelay: 500, maxDelay: 10000, factor: 2, jitter: 0.3 },
      pingInterval: 15000,
      pongTimeout: 8000,
    });
    c.addEventListener('state', () => this.renderStatus());
    c.addEventListener('reconnecting', (e) => {
      this.renderStatus(`attempt ${e.detail.attempt}, next in ${(e.detail.delay / 1000).toFixed(1)} s`);
      this.log('info', `signaling reconnect #${e.detail.attempt} in ${e.detail.delay} ms`);
    });
    c.addEventListener('close', (e) => this.log('info', `signaling closed ${e.detail.code} ${e.detail.reason}`));
    c.addEventListener('error', (e) => this._onSignalingError(e.detail));
    this.mesh.attach(c);
    return c;
  }

  _onSignalingError(d) {
    this.log('warn', `signaling error ${d.code}: ${d.message}${d.requestType ? ` (for ${d.requestType})` : ''}`);
    if (d.requestType === 'join' && d.fatal) {
      this.state.inCall = false;
      this.mesh.removeAll();
      this.ui.showNotice(d.code, ERROR_TEXT[d.code] ?? `Could not join: ${d.message ?? d.code}`, { label: 'Try again', run: () => this.rejoin() });
      this.ui.renderRoom();
    } else if (d.fatal) {
      this.ui.showNotice(
        d.code,
        d.code === 'reconnect-failed' ? 'Lost the connection to the server.' : `Disconnected by the server: ${d.message}`,
        { label: 'Reconnect', run: () => { this.ui.hideNotice(); this.client?.connect(); } },
      );
    } else if (d.code === 'unknown-peer' && d.requestType) {
      // A peer left while our message was in flight; its peer-left follows.
    } else if (d.code === 'rate-limited') {
      this.ui.toast(ERROR_TEXT['rate-limited']);
    }
  }
}
