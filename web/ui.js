// SPDX-License-Identifier: MIT
/**
 * @file The page's UI: element lookup, the three views (lobby, call, left), the status pill, notices,
 * toasts, the media banner and toggles, the room header, the invite link, and the wiring of forms and buttons.
 * (Remote tiles: tiles.js; the chat list: chat.js.)
 */
import { ClientState } from './signaling-client.js';
import { validRoom, initials } from './names.js';

const $ = (sel, root = document) => root.querySelector(sel);

/** Looks up every element the page modules use, once. */
export function findElements(root = document) {
  return {
    body: root.body,
    status: $('#status', root),
    statusText: $('#status-text', root),
    roomInfo: $('#room-info', root),
    roomName: $('#room-name', root),
    peerCount: $('#peer-count', root),
    joinView: $('#join-view', root),
    joinForm: $('#join-form', root),
    joinRoom: $('#join-room', root),
    joinName: $('#join-name', root),
    joinMedia: $('#join-media', root),
    joinError: $('#join-error', root),
    joinRandom: $('#join-random', root),
    callView: $('#call-view', root),
    leftView: $('#left-view', root),
    leftRoom: $('#left-room', root),
    mediaError: $('#media-error', root),
    mediaErrorText: $('#media-error-text', root),
    notice: $('#notice', root),
    noticeText: $('#notice-text', root),
    noticeAction: $('#notice-action', root),
    tiles: $('#tiles', root),
    selfTile: $('#self-tile', root),
    selfVideo: $('#self-video', root),
    selfName: $('#self-name', root),
    selfInitials: $('#self-initials', root),
    selfMicFlag: $('#self-mic-flag', root),
    emptyState: $('#empty-state', root),
    inviteLink: $('#invite-link', root),
    emptyCopy: $('#empty-copy', root),
    chatLog: $('#chat-log', root),
    chatForm: $('#chat-form', root),
    chatInput: $('#chat-input', root),
    chatUnread: $('#chat-unread', root),
    btnMute: $('#btn-mute', root),
    btnCamera: $('#btn-camera', root),
    btnInvite: $('#btn-invite', root),
    btnStats: $('#btn-stats', root),
    btnChat: $('#btn-chat', root),
    btnHangup: $('#btn-hangup', root),
    btnRejoin: $('#btn-rejoin', root),
    toast: $('#toast', root),
    tileTemplate: $('#tile-template', root),
  };
}

const STATUS_TEXT = {
  [ClientState.IDLE]: 'Offline',
  [ClientState.CONNECTING]: 'Connecting…',
  [ClientState.JOINING]: 'Joining…',
  [ClientState.JOINED]: 'Connected',
  [ClientState.LEFT]: 'Not in a room',
  [ClientState.RECONNECTING]: 'Reconnecting…',
  [ClientState.CLOSED]: 'Disconnected',
};

const MEDIA_MESSAGES = {
  denied: 'Camera and microphone access was denied, so you joined receive-only: you can see and hear others, they cannot see or hear you. Allow access in the browser’s site settings, then leave and rejoin.',
  missing: 'No camera or microphone was found, so you joined receive-only: you can see and hear others, they cannot see or hear you.',
  busy: 'Your camera or microphone is in use by another application, so you joined receive-only.',
  unsupported: 'This browser does not allow camera access on this page (it needs https or localhost), so you joined receive-only.',
  error: 'Could not start the camera or microphone, so you joined receive-only.',
};

function setToggle(btn, pressed, available, labelPressed, labelUnpressed, textPressed, textUnpressed) {
  btn.disabled = !available;
  btn.setAttribute('aria-pressed', String(!!pressed && available));
  btn.setAttribute('aria-label', available ? (pressed ? labelPressed : labelUnpressed) : `${labelUnpressed} (unavailable)`);
  btn.title = available ? '' : 'Not available: no device';
  btn.querySelector('.ctrl-label').textContent = pressed && available ? textPressed : textUnpressed;
  btn.classList.toggle('is-off', !!pressed || !available);
}

export class CallUI {
  /**
   * @param {object} o
   * @param {Record<string, HTMLElement>} o.el The page elements ({@link findElements}).
   * @param {object} o.state The page state (the UI writes `view`, `showStats` and `chatOpenMobile`).
   * @param {Map<string, import('./peer-link.js').PeerLink>} o.links One PeerLink per remote peer (for the counts).
   */
  constructor({ el, state, links }) {
    Object.assign(this, { el, state, links });
    /** The last invite link {@link copyInvite} tried to copy (`app.lastInvite`). */
    this.lastInvite = null;
    this._toastTimer = null;
    this._noticeHandler = null;
    el.noticeAction.addEventListener('click', () => this._noticeHandler && this._noticeHandler());
  }

  // ---------------------------------------------------------------- views, notices, toasts

  /** @param {'lobby'|'call'|'left'} view */
  setView(view) {
    const el = this.el;
    this.state.view = view;
    el.body.dataset.view = view;
    el.joinView.hidden = view !== 'lobby';
    el.callView.hidden = view !== 'call';
    el.leftView.hidden = view !== 'left';
    el.roomInfo.hidden = view === 'lobby';
  }

  /** Shows the lobby; a `room` from the URL that is not valid is put in the form with an error. */
  showLobby(room) {
    this.setView('lobby');
    if (room) {
      this.el.joinRoom.value = room.slice(0, 64);
      this._showRoomError('That room name is not valid: use only letters, digits, “-” and “_” (up to 64).');
    }
    this.el.joinRoom.focus();
  }

  /** Shows the "You left the call" view. */
  showLeft() {
    this.setView('left');
    this.renderRoom();
    this.el.btnRejoin.focus();
  }

  /**
   * Shows `#notice[data-code]` with `text` and an optional action button.
   * @param {string} code
   * @param {string} text
   * @param {{label: string, run: () => void}} action
   */
  showNotice(code, text, action) {
    const el = this.el;
    el.noticeText.textContent = text;
    el.notice.hidden = false;
    if (action) {
      el.noticeAction.textContent = action.label;
      el.noticeAction.hidden = false;
      this._noticeHandler = action.run;
    } else {
      el.noticeAction.hidden = true;
      this._noticeHandler = null;
    }
    el.notice.dataset.code = code;
  }

  hideNotice() {
    this.el.notice.hidden = true;
    this.el.notice.dataset.code = '';
  }

  toast(text) {
    const t = this.el.toast;
    t.textContent = text;
    t.hidden = false;
    t.classList.add('show');
    clearTimeout(this._toastTimer);
    this._toastTimer = setTimeout(() => {
      t.classList.remove('show');
      t.hidden = true;
    }, 2600);
  }

  // ---------------------------------------------------------------- status, room, media

  /**
   * The status pill and `body[data-signaling]`.
   * @param {string} st The SignalingClient state.
   * @param {string} [extra] Detail for the tooltip.
   */
  renderStatus(st, extra) {
    const el = this.el;
    el.status.dataset.state = st;
    el.body.dataset.signaling = st;
    el.statusText.textContent = STATUS_TEXT[st] ?? st;
    el.status.title = extra ? `Signaling: ${st} (${extra})` : `Signaling: ${st}`;
  }

  /** Room name, peer count, empty state and invite link. */
  renderRoom() {
    const el = this.el;
    const state = this.state;
    const n = this.links.size;
    el.tiles.dataset.count = String(n);
    el.emptyState.hidden = !(state.inCall && n === 0);
    el.inviteLink.value = this.inviteUrl();
    el.roomName.textContent = state.room ?? '';
    el.roomName.title = state.room ?? ''; // the name may be cut with an ellipsis on narrow screens
    el.leftRoom.textContent = state.room ?? '';
    el.peerCount.textContent = state.inCall ? `${n + 1} in call` : '';
    el.body.dataset.peers = String(n);
    document.title = state.room ? `${state.room} · signaling` : 'signaling · video call';
  }

  /** Sets the peer id the server gave us on `body[data-peer-id]`. */
  setPeerId(id) {
    this.el.body.dataset.peerId = id;
  }

  /** `body[data-media]` while getUserMedia is pending. */
  showMediaPending() {
    this.el.body.dataset.media = 'pending';
  }

  /**
   * The media banner, `body[data-media]`, the mute/camera buttons and the self tile's flags.
   * @param {import('./media.js').LocalMedia} media
   */
  renderMedia(media) {
    const el = this.el;
    const state = this.state;
    const msg = MEDIA_MESSAGES[state.media];
    if (msg) {
      el.mediaErrorText.textContent = msg;
      el.mediaError.hidden = false;
      el.mediaError.dataset.reason = state.media;
    } else if (state.media === 'partial') {
      const kind = media.hasVideo ? 'camera only (no microphone)' : 'microphone only (no camera)';
      el.mediaErrorText.textContent = `Joined with your ${kind}.`;
      el.mediaError.hidden = false;
      el.mediaError.dataset.reason = 'partial';
    } else {
      el.mediaError.hidden = true;
      el.mediaError.dataset.reason = '';
    }
    el.body.dataset.media = state.media;
    const { hasAudio, hasVideo } = media;
    setToggle(el.btnMute, state.audioMuted, hasAudio, 'Unmute microphone', 'Mute microphone', 'Unmute', 'Mute');
    setToggle(el.btnCamera, state.videoOff, hasVideo, 'Turn camera on', 'Turn camera off', 'Video', 'Video');
    el.selfTile.dataset.video = hasVideo && !state.videoOff ? 'on' : 'off';
    el.selfTile.dataset.audio = hasAudio && !state.audioMuted ? 'on' : 'off';
    el.selfMicFlag.hidden = hasAudio && !state.audioMuted;
  }

  /** The local preview and the self tile's name. @param {MediaStream|null} stream */
  showSelf(stream) {
    const el = this.el;
    const name = this.state.name;
    el.selfVideo.srcObject = stream;
    if (stream) el.selfVideo.play().catch(() => { /* muted autoplay; a pause is harmless */ });
    const label = name ? `${name} (you)` : 'You';
    el.selfName.textContent = label;
    el.selfInitials.textContent = name ? initials(name) : 'You';
    el.selfTile.setAttribute('aria-label', label);
  }

  clearSelfVideo() {
    this.el.selfVideo.srcObject = null;
  }

  // ---------------------------------------------------------------- invite

  inviteUrl() {
    const u = new URL(location.pathname, location.origin);
    if (this.state.room) u.searchParams.set('room', this.state.room);
    return u.toString();
  }

  /** Copies the invite link (clipboard API, else a hidden textarea); `#btn-invite[data-copied]` says if it worked. */
  async copyInvite() {
    const el = this.el;
    const link = this.inviteUrl();
    this.lastInvite = link;
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(link);
        ok = true;
      }
    } catch { /* fall back below */ }
    if (!ok) {
      const ta = document.createElement('textarea');
      ta.value = link;
      ta.setAttribute('readonly', '');
      ta.className = 'offscreen';
      document.body.append(ta);
      ta.select();
      try { ok = document.execCommand('copy'); } catch { ok = false; }
      ta.remove();
    }
    el.btnInvite.dataset.copied = String(ok);
    if (ok) {
      this.toast('Invite link copied');
    } else {
      // Last resort: select the link in the empty-state box or show it for manual copying.
      this.toast(`Copy this link: ${link}`);
      if (!el.emptyState.hidden) el.inviteLink.select();
    }
    return ok;
  }

  // ---------------------------------------------------------------- wiring

  /** `body[data-stats]` and `body[data-chat]` before the first render; the lobby's name field. */
  prepare(name) {
    this.el.body.dataset.stats = 'on';
    this.el.body.dataset.chat = 'closed';
    this.el.joinName.value = name;
  }

  /**
   * Wires the lobby form, the call controls and the chat form.
   * @param {object} o
   * @param {(room: string, name: string, o: {media: boolean}) => void} o.join Joins from the lobby form.
   * @param {() => void} o.hangUp
   * @param {() => void} o.rejoin
   * @param {import('./media.js').LocalMedia} o.media For the mute and camera buttons.
   * @param {import('./chat.js').ChatLog} o.chat For the chat form and the unread badge.
   */
  wire({ join, hangUp, rejoin, media, chat }) {
    const el = this.el;
    const state = this.state;
    el.joinForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const room = el.joinRoom.value.trim();
      if (!validRoom(room)) {
        this._showRoomError(room ? 'Room names use only letters, digits, “-” and “_” (up to 64).' : 'Enter a room name.');
        el.joinRoom.focus();
        return;
      }
      this._clearRoomError();
      join(room, el.joinName.value, { media: el.joinMedia.checked });
    });
    el.joinRoom.addEventListener('input', () => {
      if (!el.joinError.hidden && validRoom(el.joinRoom.value.trim())) this._clearRoomError();
    });
    el.joinRandom.addEventListener('click', () => {
      const words = ['amber', 'birch', 'cedar', 'delta', 'ember', 'fjord', 'grove', 'harbor', 'iris', 'juniper', 'kestrel', 'lumen'];
      const pick = () => words[Math.floor(Math.random() * words.length)];
      const n = crypto.getRandomValues(new Uint16Array(1))[0] % 1000;
      el.joinRoom.value = `${pick()}-${pick()}-${n}`;
      el.joinRoom.dispatchEvent(new Event('input'));
      el.joinRoom.focus();
    });

    el.btnMute.addEventListener('click', () => media.setAudioMuted(!state.audioMuted));
    el.btnCamera.addEventListener('click', () => media.setVideoOff(!state.videoOff));
    el.btnInvite.addEventListener('click', () => { this.copyInvite(); });
    el.emptyCopy.addEventListener('click', () => { this.copyInvite(); });
    el.btnHangup.addEventListener('click', hangUp);
    el.btnRejoin.addEventListener('click', rejoin);
    el.btnStats.addEventListener('click', () => {
      state.showStats = !state.showStats;
      el.body.dataset.stats = state.showStats ? 'on' : 'off';
      el.btnStats.setAttribute('aria-pressed', String(state.showStats));
      el.btnStats.setAttribute('aria-label', state.showStats ? 'Hide connection stats' : 'Show connection stats');
    });
    el.btnChat.addEventListener('click', () => {
      state.chatOpenMobile = !state.chatOpenMobile;
      el.body.dataset.chat = state.chatOpenMobile ? 'open' : 'closed';
      el.btnChat.setAttribute('aria-pressed', String(state.chatOpenMobile));
      el.btnChat.setAttribute('aria-label', state.chatOpenMobile ? 'Hide chat' : 'Show chat');
      if (state.chatOpenMobile) {
        chat.clearUnread();
        el.chatInput.focus();
      }
    });
    el.chatForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const text = el.chatInput.value;
      if (!text.trim()) return;
      chat.send(text);
      el.chatInput.value = '';
    });
    el.inviteLink.addEventListener('focus', () => el.inviteLink.select());
  }

  _showRoomError(text) {
    this.el.joinError.textContent = text;
    this.el.joinError.hidden = false;
    this.el.joinRoom.setAttribute('aria-invalid', 'true');
  }

  _clearRoomError() {
    this.el.joinError.hidden = true;
    this.el.joinRoom.removeAttribute('aria-invalid');
  }
}
