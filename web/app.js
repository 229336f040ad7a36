// SPDX-License-Identifier: MIT
/**
 * @file The call page's entry point: creates the page state, wires the modules together and boots.
 * - ui.js: element lookup, views, status pill, notices, toasts, media banner, buttons wiring
 * - tiles.js: one tile per remote peer (video, state, stats)
 * - media.js: local camera / microphone, mute and camera toggles
 * - mesh.js: signaling events routed to one PeerLink (peer-link.js) per remote peer
 * - chat.js: the chat log and sending on the data channels
 * - session.js: joining, hanging up, rejoining, signaling errors
 * - test-hooks.js: `window.app` for end-to-end tests
 *
 * URL parameters: `room` (joins at once when valid), `name`, `media=off` (join receive-only without asking
 * for the camera), `token` (sent with join when the server has auth on), `ice=relay` (TURN relay candidates
 * only: iceTransportPolicy "relay", to try or test a TURN server).
 *
 * Stable hooks for tests (DOM ids and data attributes, `window.app`): documented at the top of
 * test-hooks.js; keep them when changing the UI.
 */
import { createLog } from './log.js';
import { cleanName, validRoom } from './names.js';
import { CallUI, findElements } from './ui.js';
import { TileGrid } from './tiles.js';
import { LocalMedia } from './media.js';
import { ChatLog } from './chat.js';
import { Mesh } from './mesh.js';
import { CallSession } from './session.js';
import { installTestHooks } from './test-hooks.js';

/** Page state. Everything tests read goes through `window.app` (test-hooks.js). */
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
  /** 'all' | 'relay' (`?ice=relay`). */
  iceTransportPolicy: 'all',
  welcomes: 0,
  showStats: true,
  chatOpenMobile: false,
  unread: 0,
};

/** @type {Map<string, import('./peer-link.js').PeerLink>} One PeerLink per remote peer, by peer id. */
const links = new Map();

const { lines: logLines, log } = createLog();
const el = findElements(document);
const ui = new CallUI({ el, state, links });
const tiles = new TileGrid(el);
const media = new LocalMedia({ state, log });
const chat = new ChatLog({ el, state, links });
const mesh = new Mesh({ state, links, log, media, tiles, chat, ui });
const session = new CallSession({ state, log, ui, media, mesh, chat });

media.addEventListener('toggle', () => {
  ui.renderMedia(media);
  mesh.announceMediaState();
});
ui.wire({
  join: (room, name, opts) => session.join(room, name, opts),
  hangUp: () => session.hangUp(),
  rejoin: () => session.rejoin(),
  media,
  chat,
});
session.watchPage();
installTestHooks({ state, links, logLines, ui, media, chat, session });

function boot() {
  const params = new URLSearchParams(location.search);
  const room = params.get('room');
  const name = cleanName(params.get('name'));
  const token = params.get('token');
  const mediaParam = params.get('media');
  ui.prepare(name);
  if (token) state.token = token;
  if (params.get('ice') === 'relay') state.iceTransportPolicy = 'relay';
  session.renderStatus();
  ui.renderRoom();
  if (room && validRoom(room)) {
    session.join(room, name, { media: !(mediaParam === 'off' || mediaParam === '0' || mediaParam === 'false') });
  } else {
    ui.showLobby(room);
  }
}

boot();
