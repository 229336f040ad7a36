// SPDX-License-Identifier: MIT
/**
 * @file The call page: lobby, local media, one PeerLink per remote peer (mesh), chat, controls, and the
 * `window.app` hooks that end-to-end tests use.
 *
 * URL parameters: `room` (joins at once when valid), `name`, `media=off` (join receive-only without asking
 * for the camera), `token` (sent with join when the server has auth on).
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
 * - `window.app`: see the object at the bottom of this file (`snapshot()`, `peers`, `waitFor()`,
 *   `sendChat()`, ...).
 */
import { SignalingClient, ClientState, defaultSignalingUrl } from './signaling-client.js';
import { PeerLink } from './call.js';
import { createLog } from './log.js';
import { validRoom, cleanName, initials, displayName } from './names.js';
import { LocalMedia } from './media.js';
import { TileGrid } from './tiles.js';
import { ChatLog } from './chat.js';

const $ = (sel, root = document) => root.querySelector(sel);

const el = {
  body: document.body,
  status: $('#status'),
  statusText: $('#status-text'),
  roomInfo: $('#room-info'),
  roomName: $('#room-name'),
  peerCount: $('#peer-count'),
  joinView: $('#join-view'),
  joinForm: $('#join-form'),
  joinRoom: $('#join-room'),
  joinName: $('#join-name'),
  joinMedia: $('#join-media'),
  joinError: $('#join-error'),
  joinRandom: $('#join-random'),
  callView: $('#call-view'),
  leftView: $('#left-view'),
  leftRoom: $('#left-room'),
  mediaError: $('#media-error'),
  mediaErrorText: $('#media-error-text'),
  notice: $('#notice'),
  noticeText: $('#notice-text'),
  noticeAction: $('#notice-action'),
  tiles: $('#tiles'),
  selfTile: $('#self-tile'),
  selfVideo: $('#self-video'),
  selfName: $('#self-name'),
  selfInitials: $('#self-initials'),
  selfMicFlag: $('#self-mic-flag'),
  emptyState: $('#empty-state'),
  inviteLink: $('#invite-link'),
  emptyCopy: $('#empty-copy'),
  chatPanel: $('#chat-panel'),
  chatLog: $('#chat-log'),
  chatForm: $('#chat-form'),
  chatInput: $('#chat-input'),
  chatUnread: $('#chat-unread'),
  btnMute: $('#btn-mute'),
  btnCamera: $('#btn-camera'),
  btnInvite: $('#btn-invite'),
  btnStats: $('#btn-stats'),
  btnChat: $('#btn-chat'),
  btnHangup: $('#btn-hangup'),
  btnRejoin: $('#btn-rejoin'),
  toast: $('#toast'),
  tileTemplate: $('#tile-template'),
};

/** Page state. Everything tests read goes through `window.app` (below). */
const state = {
  room: null,
  name: '',
  token: undefined,
  wantMedia: true,
  /** 'pending' | 'ok' | 'partial' | 'denied' | 'missing' | 'busy' | 'unsupported' | 'error' | 'off' | 'stopped' */
  media: 'pending',
  mediaError: null,
  /** 'lobby' | 'call' | 'left' */
  view: 'lobby',
  inCall: false,
  audioMuted: false,
  videoOff: false,
  selfId: null,
  iceServers: [],
  welcomes: 0,
  showStats: true,
  chatOpenMobile: false,
  unread: 0,
};

/** @type {SignalingClient|null} */
let client = null;
/** @type {Map<string, PeerLink>} */
const links = new Map();
const tiles = new TileGrid(el);
const chat = new ChatLog({ el, state, links });
/** Recent log lines (also for debugging failed tests). */
const { lines: logLines, log } = createLog();
const media = new LocalMedia({ state, log });
media.addEventListener('toggle', () => {
  renderMediaState();
  announceMediaState();
});

// ------------------------------------------------------------------------------------------- helpers

function inviteUrl() {
  const u = new URL(location.pathname, location.origin);
  if (state.room) u.searchParams.set('room', state.room);
  return u.toString();
}

let toastTimer = null;
function toast(text) {
  el.toast.textContent = text;
  el.toast.hidden = false;
  el.toast.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    el.toast.classList.remove('show');
    el.toast.hidden = true;
  }, 2600);
}

function setView(view) {
  state.view = view;
  el.body.dataset.view = view;
  el.joinView.hidden = view !== 'lobby';
  el.callView.hidden = view !== 'call';
  el.leftView.hidden = view !== 'left';
  el.roomInfo.hidden = view === 'lobby';
}

function showNotice(text, action) {
  if (!text) {
    el.notice.hidden = true;
    el.notice.dataset.code = '';
    return;
  }
  el.noticeText.textContent = text;
  el.notice.hidden = false;
  if (action) {
    el.noticeAction.textContent = action.label;
    el.noticeAction.hidden = false;
    noticeHandler = action.run;
  } else {
    el.noticeAction.hidden = true;
    noticeHandler = null;
  }
}
let noticeHandler = null;
el.noticeAction.addEventListener('click', () => noticeHandler && noticeHandler());

// ------------------------------------------------------------------------------------------- status pill

const STATUS_TEXT = {
  [ClientState.IDLE]: 'Offline',
  [ClientState.CONNECTING]: 'Connecting…',
  [ClientState.JOINING]: 'Joining…',
  [ClientState.JOINED]: 'Connected',
  [ClientState.LEFT]: 'Not in a room',
  [ClientState.RECONNECTING]: 'Reconnecting…',
  [ClientState.CLOSED]: 'Disconnected',
};

function renderStatus(extra) {
  const st = client ? client.state : ClientState.IDLE;
  el.status.dataset.state = st;
  el.body.dataset.signaling = st;
  el.statusText.textContent = STATUS_TEXT[st] ?? st;
  el.status.title = extra ? `Signaling: ${st} (${extra})` : `Signaling: ${st}`;
}

// ------------------------------------------------------------------------------------------- media

const MEDIA_MESSAGES = {
  denied: 'Camera and microphone access was denied, so you joined receive-only: you can see and hear others, they cannot see or hear you. Allow access in the browser’s site settings, then leave and rejoin.',
  missing: 'No camera or microphone was found, so you joined receive-only: you can see and hear others, they cannot see or hear you.',
  busy: 'Your camera or microphone is in use by another application, so you joined receive-only.',
  unsupported: 'This browser does not allow camera access on this page (it needs https or localhost), so you joined receive-only.',
  error: 'Could not start the camera or microphone, so you joined receive-only.',
};

function renderMediaState() {
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

function setToggle(btn, pressed, available, labelPressed, labelUnpressed, textPressed, textUnpressed) {
  btn.disabled = !available;
  btn.setAttribute('aria-pressed', String(!!pressed && available));
  btn.setAttribute('aria-label', available ? (pressed ? labelPressed : labelUnpressed) : `${labelUnpressed} (unavailable)`);
  btn.title = available ? '' : 'Not available: no device';
  btn.querySelector('.ctrl-label').textContent = pressed && available ? textPressed : textUnpressed;
  btn.classList.toggle('is-off', !!pressed || !available);
}

function attachSelfVideo() {
  el.selfVideo.srcObject = media.stream;
  if (media.stream) el.selfVideo.play().catch(() => { /* muted autoplay; a pause is harmless */ });
  const label = state.name ? `${state.name} (you)` : 'You';
  el.selfName.textContent = label;
  el.selfInitials.textContent = state.name ? initials(state.name) : 'You';
  el.selfTile.setAttribute('aria-label', label);
}

function stopLocalMedia() {
  media.stop();
  el.selfVideo.srcObject = null;
}

/** Tells the others (through the server's `message` relay) whether our mic/camera are on. */
function announceMediaState(to) {
  if (client?.joined) client.sendMessage(media.payload(), to);
}

// ------------------------------------------------------------------------------------------- room

function renderRoom() {
  const n = links.size;
  el.tiles.dataset.count = String(n);
  el.emptyState.hidden = !(state.inCall && n === 0);
  el.inviteLink.value = inviteUrl();
  el.roomName.textContent = state.room ?? '';
  el.roomName.title = state.room ?? ''; // the name may be cut with an ellipsis on narrow screens
  el.leftRoom.textContent = state.room ?? '';
  el.peerCount.textContent = state.inCall ? `${n + 1} in call` : '';
  el.body.dataset.peers = String(n);
  document.title = state.room ? `${state.room} · signaling` : 'signaling · video call';
}

// ------------------------------------------------------------------------------------------- peers

function addLink(info, initiator) {
  const old = links.get(info.peer);
  if (old) removeLink(info.peer);
  const link = new PeerLink({
    id: info.peer,
    name: info.name ?? null,
    meta: info.meta ?? null,
    selfId: state.selfId,
    initiator,
    localStream: media.stream,
    iceServers: state.iceServers,
    signaling: client,
    log,
  });
  links.set(info.peer, link);
  link.addEventListener('chat', (ev) => chat.add({ from: link.id, name: displayName(link.id, link.name), text: ev.detail.text, direction: 'in', via: 'datachannel' }));
  tiles.add(link);
  renderRoom();
  log('info', `peer ${info.peer} (${info.name ?? ''}) added, ${initiator ? 'we offer' : 'they offer'}, ${link.polite ? 'polite' : 'impolite'}`);
  return link;
}

function removeLink(id) {
  const link = links.get(id);
  if (link) {
    link.close();
    links.delete(id);
  }
  if (tiles.remove(id)) renderRoom();
}

function removeAllLinks() {
  for (const id of [...links.keys()]) removeLink(id);
}

// ------------------------------------------------------------------------------------------- signaling

function makeClient() {
  const c = new SignalingClient(defaultSignalingUrl(location), {
    room: state.room,
    name: state.name || undefined,
    token: state.token,
    meta: { client: 'web' },
    reconnect: { minDelay: 500, maxDelay: 10000, factor: 2, jitter: 0.3 },
    pingInterval: 15000,
    pongTimeout: 8000,
  });
  c.addEventListener('state', () => renderStatus());
  c.addEventListener('reconnecting', (e) => {
    renderStatus(`attempt ${e.detail.attempt}, next in ${(e.detail.delay / 1000).toFixed(1)} s`);
    log('info', `signaling reconnect #${e.detail.attempt} in ${e.detail.delay} ms`);
  });
  c.addEventListener('close', (e) => log('info', `signaling closed ${e.detail.code} ${e.detail.reason}`));
  c.addEventListener('welcome', (e) => onWelcome(e.detail));
  c.addEventListener('peer-joined', (e) => onPeerJoined(e.detail));
  c.addEventListener('peer-left', (e) => {
    log('info', `peer-left ${e.detail.peer}`);
    removeLink(e.detail.peer);
  });
  c.addEventListener('offer', (e) => {
    const m = e.detail;
    if (!state.inCall) return;
    let link = links.get(m.from);
    if (!link) {
      const info = c.peers.get(m.from) ?? { peer: m.from };
      link = addLink(info, false);
    }
    link.handleSignal(m);
  });
  c.addEventListener('answer', (e) => links.get(e.detail.from)?.handleSignal(e.detail));
  c.addEventListener('candidate', (e) => links.get(e.detail.from)?.handleSignal(e.detail));
  c.addEventListener('message', (e) => onAppMessage(e.detail));
  c.addEventListener('error', (e) => onSignalingError(e.detail));
  return c;
}

function onWelcome(w) {
  state.welcomes += 1;
  state.selfId = w.peer;
  state.iceServers = Array.isArray(w.iceServers) ? w.iceServers : [];
  el.body.dataset.peerId = w.peer;
  showNotice(null);
  log('info', `welcome: ${w.peer} in ${w.room} with ${w.peers.length} peer(s)${w.reconnected ? ', after reconnect' : ''}${w.resumed ? ' (resumed)' : ''}`);
  if (!state.inCall) {
    // Hung up while the join was in flight: leave again.
    client?.leave();
    return;
  }
  const listed = new Map(w.peers.map((p) => [p.peer, p]));
  if (w.resumed) {
    // Same session: the others never saw us leave. Keep live links to peers still here.
    for (const id of [...links.keys()]) if (!listed.has(id)) removeLink(id);
    for (const p of w.peers) {
      const link = links.get(p.peer);
      if (link && (link.state === 'failed' || link.state === 'closed')) removeLink(p.peer);
      // A peer that joined while we were away got us in its welcome, so it offers to us.
      if (!links.has(p.peer)) addLink(p, false);
    }
  } else {
    // New session (first join, or a reconnect with a new peer id): the others saw peer-left for our old id
    // and peer-joined for the new one. Every old link is stale; we are the newcomer, so we offer to each.
    removeAllLinks();
    for (const p of w.peers) addLink(p, true);
  }
  renderRoom();
  announceMediaState();
}

function onPeerJoined(p) {
  log('info', `peer-joined ${p.peer} (${p.name ?? ''})`);
  if (!state.inCall) return;
  // The newcomer offers; we wait for it.
  addLink(p, false);
  announceMediaState(p.peer);
  toast(`${displayName(p.peer, p.name)} joined`);
}

function onAppMessage(m) {
  const d = m.data;
  const link = links.get(m.from);
  if (d && typeof d === 'object' && d.type === 'media-state') {
    if (link) {
      link.remoteMedia = { audio: d.audio !== false, video: d.video !== false };
      tiles.render(link);
    }
  } else if (typeof d === 'string' || (d && typeof d === 'object' && d.type === 'chat' && typeof d.text === 'string')) {
    const info = client?.peers.get(m.from);
    chat.add({
      from: m.from,
      name: displayName(m.from, link?.name ?? info?.name),
      text: typeof d === 'string' ? d : d.text,
      direction: 'in',
      via: 'signaling',
    });
  } else {
    log('info', `message from ${m.from} ignored`, d);
  }
}

const ERROR_TEXT = {
  'room-full': 'This room is full. Try again later or pick another room.',
  unauthorized: 'You are not allowed to join this room (missing, invalid or expired token).',
  'rate-limited': 'Too many messages: the server dropped one. Slow down a little.',
  'already-joined': 'Already in a room.',
};

function onSignalingError(d) {
  log('warn', `signaling error ${d.code}: ${d.message}${d.requestType ? ` (for ${d.requestType})` : ''}`);
  if (d.requestType === 'join' && d.fatal) {
    state.inCall = false;
    removeAllLinks();
    showNotice(ERROR_TEXT[d.code] ?? `Could not join: ${d.message ?? d.code}`, { label: 'Try again', run: () => rejoin() });
    el.notice.dataset.code = d.code;
    renderRoom();
  } else if (d.fatal) {
    showNotice(
      d.code === 'reconnect-failed' ? 'Lost the connection to the server.' : `Disconnected by the server: ${d.message}`,
      { label: 'Reconnect', run: () => { showNotice(null); client?.connect(); } },
    );
    el.notice.dataset.code = d.code;
  } else if (d.code === 'unknown-peer' && d.requestType) {
    // A peer left while our message was in flight; its peer-left follows.
  } else if (d.code === 'rate-limited') {
    toast(ERROR_TEXT['rate-limited']);
  }
}

// ------------------------------------------------------------------------------------------- flow

async function startCall() {
  setView('call');
  state.inCall = true;
  chat.clearUnread();
  showNotice(null);
  renderRoom();
  const url = new URL(location.href);
  url.searchParams.set('room', state.room);
  if (state.name) url.searchParams.set('name', state.name);
  else url.searchParams.delete('name');
  if (state.wantMedia) url.searchParams.delete('media');
  else url.searchParams.set('media', 'off');
  history.replaceState(null, '', url);

  state.media = 'pending';
  el.body.dataset.media = 'pending';
  stopLocalMedia(); // a retry after a failed join must not leave the previous camera running
  await media.start();
  if (!state.inCall) { stopLocalMedia(); return; } // hung up while the permission prompt was open
  state.audioMuted = false;
  state.videoOff = false;
  attachSelfVideo();
  renderMediaState();

  if (!client) {
    client = makeClient();
    renderStatus();
    client.connect();
  } else {
    client.join({ room: state.room, name: state.name || undefined }).catch(() => { /* shown by the error event */ });
  }
}

function hangUp() {
  if (state.view !== 'call') return;
  state.inCall = false;
  client?.leave();
  removeAllLinks();
  stopLocalMedia();
  state.media = 'stopped';
  renderMediaState();
  showNotice(null);
  setView('left');
  renderRoom();
  el.btnRejoin.focus();
}

function rejoin() {
  if (!validRoom(state.room)) return;
  showNotice(null);
  if (state.view === 'call' && state.inCall) return;
  startCall();
}

async function copyInvite() {
  const link = inviteUrl();
  app.lastInvite = link;
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
    toast('Invite link copied');
  } else {
    // Last resort: select the link in the empty-state box or show it for manual copying.
    toast(`Copy this link: ${link}`);
    if (!el.emptyState.hidden) el.inviteLink.select();
  }
  return ok;
}

// ------------------------------------------------------------------------------------------- UI wiring

el.joinForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const room = el.joinRoom.value.trim();
  if (!validRoom(room)) {
    el.joinError.textContent = room ? 'Room names use only letters, digits, “-” and “_” (up to 64).' : 'Enter a room name.';
    el.joinError.hidden = false;
    el.joinRoom.setAttribute('aria-invalid', 'true');
    el.joinRoom.focus();
    return;
  }
  el.joinError.hidden = true;
  el.joinRoom.removeAttribute('aria-invalid');
  state.room = room;
  state.name = cleanName(el.joinName.value);
  state.wantMedia = el.joinMedia.checked;
  startCall();
});

el.joinRoom.addEventListener('input', () => {
  if (!el.joinError.hidden && validRoom(el.joinRoom.value.trim())) {
    el.joinError.hidden = true;
    el.joinRoom.removeAttribute('aria-invalid');
  }
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
el.btnInvite.addEventListener('click', () => { copyInvite(); });
el.emptyCopy.addEventListener('click', () => { copyInvite(); });
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

window.addEventListener('online', () => client?.reconnectNow());
window.addEventListener('pagehide', () => {
  // Leave promptly so the others see peer-left now rather than after a timeout.
  client?.close(1000, 'page closed');
  for (const link of links.values()) link.close();
});
window.addEventListener('pageshow', (ev) => {
  if (ev.persisted) location.reload();
});

// ------------------------------------------------------------------------------------------- test hooks

function peerSnapshots() {
  const out = {};
  for (const [id, link] of links) out[id] = link.snapshot();
  return out;
}

function snapshot() {
  return {
    room: state.room,
    name: state.name,
    selfId: state.selfId,
    view: state.view,
    inCall: state.inCall,
    signaling: client ? client.state : ClientState.IDLE,
    welcomes: state.welcomes,
    media: state.media,
    mediaError: state.mediaError,
    audioMuted: state.audioMuted,
    videoOff: state.videoOff,
    localTracks: media.stream ? media.stream.getTracks().map((t) => ({ kind: t.kind, enabled: t.enabled, label: t.label })) : [],
    iceServers: state.iceServers,
    peers: peerSnapshots(),
    chat: chat.entries.map((m) => ({ ...m })),
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
  get chat() { return chat.entries.map((m) => ({ ...m })); },
  /** The SignalingClient (null before the first join). */
  get client() { return client; },
  get localStream() { return media.stream; },
  /** Recent log lines. */
  get log() { return logLines.slice(); },
  lastInvite: null,
  snapshot,
  waitFor,
  sendChat: (text, to) => chat.send(text, to),
  hangUp,
  rejoin,
  copyInvite,
  setAudioMuted: (muted) => media.setAudioMuted(muted),
  setVideoOff: (off) => media.setVideoOff(off),
  /** Joins `room` from the lobby (same as the form). */
  join(room, name = '', { media = true } = {}) {
    if (!validRoom(room)) throw new TypeError('invalid room name');
    state.room = room;
    state.name = cleanName(name);
    state.wantMedia = media;
    return startCall();
  },
};
window.app = app;

// ------------------------------------------------------------------------------------------- boot

function boot() {
  const params = new URLSearchParams(location.search);
  const room = params.get('room');
  const name = cleanName(params.get('name'));
  const token = params.get('token');
  const media = params.get('media');
  el.body.dataset.stats = 'on';
  el.body.dataset.chat = 'closed';
  if (token) state.token = token;
  el.joinName.value = name;
  renderStatus();
  renderRoom();
  if (room && validRoom(room)) {
    state.room = room;
    state.name = name;
    state.wantMedia = !(media === 'off' || media === '0' || media === 'false');
    startCall();
  } else {
    setView('lobby');
    if (room) {
      el.joinRoom.value = room.slice(0, 64);
      el.joinError.textContent = 'That room name is not valid: use only letters, digits, “-” and “_” (up to 64).';
      el.joinError.hidden = false;
      el.joinRoom.setAttribute('aria-invalid', 'true');
    }
    el.joinRoom.focus();
  }
}

boot();
