// SPDX-License-Identifier: MIT
/**
 * @file The mesh: one PeerLink (peer-link.js) per remote peer. It routes the SignalingClient's events to the links:
 * `welcome` (reconcile the links with the room), `peer-joined` / `peer-left`, `offer` / `answer` /
 * `candidate`, and app `message`s (`media-state` from a peer, chat sent over signaling).
 */
import { PeerLink } from './peer-link.js';
import { displayName } from './names.js';
import { ENDPOINT_KINDS } from './protocol.js';

/** How the tile of a WHIP or WHEP session (which has no name) is labelled. */
const ENDPOINT_NAMES = { whip: 'Broadcast (WHIP)', whep: 'Viewer (WHEP)' };

/** Whether a peer is a WHIP or WHEP session: it offers, once, to the peer it wants; nobody offers to it. */
const isEndpoint = (info) => ENDPOINT_KINDS.includes(info?.meta?.kind);

export class Mesh {
  /**
   * @param {object} o
   * @param {object} o.state The page state (the mesh writes `welcomes`, `selfId` and `iceServers`).
   * @param {Map<string, PeerLink>} o.links One PeerLink per remote peer, by peer id (filled here).
   * @param {(level: string, msg: string, extra?: any) => void} o.log
   * @param {import('./media.js').LocalMedia} o.media The stream each new link sends, and our media state.
   * @param {import('./tiles.js').TileGrid} o.tiles
   * @param {import('./chat.js').ChatLog} o.chat
   * @param {import('./ui.js').CallUI} o.ui
   */
  constructor({ state, links, log, media, tiles, chat, ui }) {
    Object.assign(this, { state, links, log, media, tiles, chat, ui });
    /** @type {import('./signaling-client.js').SignalingClient|null} */
    this.client = null;
  }

  /** Routes the events of `client` (created once per page) to the links. */
  attach(client) {
    this.client = client;
    client.addEventListener('welcome', (e) => this._onWelcome(e.detail));
    client.addEventListener('peer-joined', (e) => this._onPeerJoined(e.detail));
    client.addEventListener('peer-left', (e) => {
      this.log('info', `peer-left ${e.detail.peer}`);
      this.removeLink(e.detail.peer);
    });
    client.addEventListener('offer', (e) => {
      const m = e.detail;
      if (!this.state.inCall) return;
      let link = this.links.get(m.from);
      if (!link) {
        const info = client.peers.get(m.from) ?? { peer: m.from };
        link = this.addLink(info, false);
      }
      link.handleSignal(m);
    });
    client.addEventListener('answer', (e) => this.links.get(e.detail.from)?.handleSignal(e.detail));
    client.addEventListener('candidate', (e) => this.links.get(e.detail.from)?.handleSignal(e.detail));
    client.addEventListener('message', (e) => this._onAppMessage(e.detail));
    client.addEventListener('ice-servers', (e) => {
      // Fresh TURN credentials: every link uses them from now on (an ICE restart needs valid ones).
      this.state.iceServers = e.detail.iceServers;
      for (const link of this.links.values()) link.setIceServers(e.detail.iceServers);
      this.log('info', `ice-servers: ${e.detail.iceServers.length} server(s) updated`);
    });
  }

  /** Tells the others (or only `to`) whether our mic/camera are on. */
  announceMediaState(to) {
    if (this.client?.joined) this.client.sendMessage(this.media.payload(), to);
  }

  addLink(info, initiator) {
    const old = this.links.get(info.peer);
    if (old) this.removeLink(info.peer);
    const link = new PeerLink({
      id: info.peer,
      name: info.name ?? ENDPOINT_NAMES[info.meta?.kind] ?? null,
      meta: info.meta ?? null,
      selfId: this.state.selfId,
      initiator,
      localStream: this.media.stream,
      iceServers: this.state.iceServers,
      iceTransportPolicy: this.state.iceTransportPolicy,
      signaling: this.client,
      log: this.log,
    });
    this.links.set(info.peer, link);
    link.addEventListener('chat', (ev) => this.chat.add({ from: link.id, name: displayName(link.id, link.name), text: ev.detail.text, direction: 'in', via: 'datachannel' }));
    this.tiles.add(link);
    this.ui.renderRoom();
    this.log('info', `peer ${info.peer} (${info.name ?? ''}) added, ${initiator ? 'we offer' : 'they offer'}, ${link.polite ? 'polite' : 'impolite'}`);
    return link;
  }

  removeLink(id) {
    const link = this.links.get(id);
    if (link) {
      link.close();
      this.links.delete(id);
    }
    if (this.tiles.remove(id)) this.ui.renderRoom();
  }

  removeAll() {
    for (const id of [...this.links.keys()]) this.removeLink(id);
  }

  /** Closes every link without removing it (the page is going away). */
  closeAll() {
    for (const link of this.links.values()) link.close();
  }

  _onWelcome(w) {
    const state = this.state;
    state.welcomes += 1;
    state.selfId = w.peer;
    state.iceServers = Array.isArray(w.iceServers) ? w.iceServers : [];
    this.ui.setPeerId(w.peer);
    this.ui.hideNotice();
    this.log('info', `welcome: ${w.peer} in ${w.room} with ${w.peers.length} peer(s)${w.reconnected ? ', after reconnect' : ''}${w.resumed ? ' (resumed)' : ''}`);
    if (!state.inCall) {
      // Hung up while the join was in flight: leave again.
      this.client.leave();
      return;
    }
    const listed = new Map(w.peers.map((p) => [p.peer, p]));
    if (w.resumed) {
      // Same session: the others never saw us leave. Keep live links to peers still here.
      for (const id of [...this.links.keys()]) if (!listed.has(id)) this.removeLink(id);
      for (const p of w.peers) {
        const link = this.links.get(p.peer);
        if (link && (link.state === 'failed' || link.state === 'closed')) this.removeLink(p.peer);
        // A peer that joined while we were away got us in its welcome, so it offers to us.
        if (!this.links.has(p.peer) && !isEndpoint(p)) this.addLink(p, false);
      }
    } else {
      // New session (first join, or a reconnect with a new peer id): the others saw peer-left for our old id
      // and peer-joined for the new one. Every old link is stale; we are the newcomer, so we offer to each.
      this.removeAll();
      for (const p of w.peers) if (!isEndpoint(p)) this.addLink(p, true);
    }
    this.ui.renderRoom();
    this.announceMediaState();
  }

  _onPeerJoined(p) {
    this.log('info', `peer-joined ${p.peer} (${p.name ?? ''})`);
    if (!this.state.inCall || isEndpoint(p)) return; // a WHIP/WHEP session's link comes with its offer
    // The newcomer offers; we wait for it.
    this.addLink(p, false);
    this.announceMediaState(p.peer);
    this.ui.toast(`${displayName(p.peer, p.name)} joined`);
  }

  _onAppMessage(m) {
    const d = m.data;
    const link = this.links.get(m.from);
    if (d && typeof d === 'object' && d.type === 'media-state') {
      if (link) {
        link.remoteMedia = { audio: d.audio !== false, video: d.video !== false };
        this.tiles.render(link);
      }
    } else if (typeof d === 'string' || (d && typeof d === 'object' && d.type === 'chat' && typeof d.text === 'string')) {
      const info = this.client.peers.get(m.from);
      this.chat.add({
        from: m.from,
        name: displayName(m.from, link?.name ?? info?.name),
        text: typeof d === 'string' ? d : d.text,
        direction: 'in',
        via: 'signaling',
      });
    } else {
      this.log('info', `message from ${m.from} ignored`, d);
    }
  }
}
