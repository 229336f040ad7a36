// SPDX-License-Identifier: MIT
/**
 * @file The `window.app` object that end-to-end tests use, installed on every page load by app.js. Not used by
 * the page itself.
 *
 * Stable hooks for tests (keep them when changing the UI):
 * - `#status[data-state]`: the SignalingClient state (idle, connecting, joining, joined, left, reconnecting,
 *   closed); its text says e.g. "Connected" / "Reconnecting…". `body[data-signaling]` mirrors it.
 * - `#media-error` (hidden unless getUserMedia failed; `data-reason` = denied | missing | busy | unsupported
 *   | error | partial). `body[data-media]` = `app.state.media`.
 * - `#notice[data-code]`: join / connection problems (room-full, unauthorized, ...), with `#notice-action`.
 * - `#tiles .tile[data-peer]`: one per remote peer, with `data-state` (RTCPeerConnection.connectionState),
 *   `data-ice`, `data-signaling`, `data-channel` (open | connecting | closed | none), `data-video`,
 *   `data-audio` (on | off), `data-polite`, `data-initiator`; `[data-role=name]`; `[data-role=stats]` with
 *   `data-rtt`, `data-in-kbps`, `data-out-kbps`, `data-local-type`, `data-remote-type`. `#self-tile` is the
 *   local preview (no `data-peer`). `#empty-state` is visible while alone in the room.
 * - `#chat-log li.chat-msg` with `data-direction` (in | out | system), `data-from`, `data-via`
 *   (datachannel | signaling | local) and `data-text`; `#chat-input`, `#chat-form`.
 * - Buttons: `#btn-mute`, `#btn-camera` (aria-pressed), `#btn-invite` (`data-copied` after a click),
 *   `#btn-stats`, `#btn-chat` (narrow screens), `#btn-hangup`, `#btn-rejoin`; lobby `#join-form`,
 *   `#join-room`, `#join-name`, `#join-media`, `#join-error`.
 * - `window.app`: see the object below (`snapshot()`, `peers`, `waitFor()`, `sendChat()`, ...).
 */
import { validRoom } from './names.js';

/**
 * Builds `window.app` over the page's state and modules.
 * @param {object} o
 * @param {object} o.state The page state.
 * @param {Map<string, import('./peer-link.js').PeerLink>} o.links One PeerLink per remote peer.
 * @param {object[]} o.logLines Recent log lines (log.js).
 * @param {import('./ui.js').CallUI} o.ui
 * @param {import('./media.js').LocalMedia} o.media
 * @param {import('./chat.js').ChatLog} o.chat
 * @param {import('./session.js').CallSession} o.session
 */
export function installTestHooks({ state, links, logLines, ui, media, chat, session }) {
  function peerSnapshots() {
    const out = {};
    for (const [id, link] of links) out[id] = link.snapshot();
    return out;
  }

  const chatCopy = () => chat.entries.map((m) => ({ ...m }));

  function snapshot() {
    const stream = media.stream;
    return {
      room: state.room,
      name: state.name,
      selfId: state.selfId,
      view: state.view,
      inCall: state.inCall,
      signaling: session.signalingState,
      welcomes: state.welcomes,
      media: state.media,
      mediaError: state.mediaError,
      audioMuted: state.audioMuted,
      videoOff: state.videoOff,
      localTracks: stream ? stream.getTracks().map((t) => ({ kind: t.kind, enabled: t.enabled, label: t.label })) : [],
      iceServers: state.iceServers,
      peers: peerSnapshots(),
      chat: chatCopy(),
    };
  }

  /**
   * Resolves when `predicate(snapshot())` is truthy; rejects after `timeoutMs`.
   * @param {(s: ReturnType<typeof snapshot>) => boolean} predicate
   * @param {number} [timeoutMs=15000]
   */
  function waitFor(predicate, timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const tick = () => {
        let ok = false;
        try { ok = predicate(snapshot()); } catch { ok = false; }
        if (ok) return resolve(snapshot());
        if (performance.now() - t0 > timeoutMs) return reject(new Error('app.waitFor timed out'));
        setTimeout(tick, 100);
      };
      tick();
    });
  }

  const app = {
    /** Live page state (read-only by convention). */
    state,
    /** JSON view of every remote peer: `{[peerId]: {connectionState, dataChannel, stats, ...}}`. */
    get peers() { return peerSnapshots(); },
    /** `{[peerId]: connectionState}`. */
    get peerStates() {
      const out = {};
      for (const [id, link] of links) out[id] = link.state;
      return out;
    },
    /** The PeerLink objects (RTCPeerConnection at `.pc`). */
    links,
    /** Chat history entries. */
    get chat() { return chatCopy(); },
    /** The SignalingClient (null before the first join). */
    get client() { return session.client; },
    get localStream() { return media.stream; },
    /** Recent log lines. */
    get log() { return logLines.slice(); },
    /** The last invite link `copyInvite()` tried to copy (null before). */
    get lastInvite() { return ui.lastInvite; },
    snapshot,
    waitFor,
    sendChat: (text, to) => chat.send(text, to),
    hangUp: () => session.hangUp(),
    rejoin: () => session.rejoin(),
    copyInvite: () => ui.copyInvite(),
    setAudioMuted: (muted) => media.setAudioMuted(muted),
    setVideoOff: (off) => media.setVideoOff(off),
    /** Joins `room` from the lobby (same as the form). */
    join(room, name = '', { media: withMedia = true } = {}) {
      if (!validRoom(room)) throw new TypeError('invalid room name');
      return session.join(room, name, { media: withMedia });
    },
  };
  window.app = app;
}
