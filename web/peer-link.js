// SPDX-License-Identifier: MIT
/**
 * @file One RTCPeerConnection per remote peer, with the "perfect negotiation" pattern
 * (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example, MDN "Establishing a connection: the WebRTC
 * perfect negotiation pattern"), trickle ICE, a text-chat data channel and periodic stats.
 *
 * Roles, decided without extra messages:
 * - polite/impolite: the peer whose id sorts first (plain string comparison) is polite. On an offer
 *   collision (glare) the polite side rolls back its own offer and answers; the impolite side ignores the
 *   incoming offer.
 * - initiator: the newcomer. The peer that finds the other one in its `welcome` (it joined second, or it
 *   re-joined after a reconnect) makes the first offer; the peer that learns of it by `peer-joined` (or by
 *   its first offer) waits for that offer, so exactly one side starts, and perfect negotiation only has to
 *   handle later renegotiations and rare races. If a non-initiator has had no offer after
 *   `FALLBACK_OFFER_MS` (a peer that only answers), it offers itself.
 * - a WHIP or WHEP session (`meta.kind`, docs/protocol.md "WHIP and WHEP"): it offers once and cannot take
 *   trickled candidates nor a new offer, so this side only answers, after gathering every candidate, never
 *   offers, opens no data channel, and tells it `ended` when the media fails (it cannot restart ICE).
 */
import { ENDPOINT_ENDED, ENDPOINT_KINDS } from './protocol.js';

/** A non-initiator that has received no offer after this long makes the first offer itself. */
export const FALLBACK_OFFER_MS = 5000;

/** How long an answer to a WHIP/WHEP session waits for candidates to be gathered before it goes anyway. */
export const GATHER_TIMEOUT_MS = 5000;

/** A WHIP/WHEP session whose media stays disconnected this long is told it ended (a vanished broadcaster). */
export const ENDPOINT_DISCONNECTED_MS = 10000;

/** Label of the chat data channel. */
export const CHAT_LABEL = 'chat';

/**
 * @typedef {object} PeerStats
 * @property {number|null} rttMs Current round-trip time of the selected candidate pair, in ms.
 * @property {number|null} inKbps Inbound RTP bitrate over the last interval (audio + video), kbit/s.
 * @property {number|null} outKbps Outbound RTP bitrate over the last interval, kbit/s.
 * @property {string|null} localType Selected pair's local candidate type (host, srflx, prflx, relay).
 * @property {string|null} remoteType Selected pair's remote candidate type.
 * @property {string|null} localAddress `address:port` of the local candidate.
 * @property {string|null} remoteAddress `address:port` of the remote candidate.
 * @property {string|null} protocol Candidate protocol (udp/tcp).
 * @property {number|null} frameWidth Width of the inbound video, if any.
 * @property {number|null} frameHeight Height of the inbound video, if any.
 * @property {number|null} framesPerSecond Inbound video fps, if reported.
 */

/**
 * A call leg to one remote peer.
 *
 * Events (CustomEvent): `change` (any state changed; detail = `snapshot()`), `track` (detail `{stream}`),
 * `chat` (detail `{text}`: a text received on a data channel), `stats` (detail {@link PeerStats}).
 */
export class PeerLink extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.id Remote peer id.
   * @param {string|null} o.name Remote display name.
   * @param {object|null} o.meta Remote metadata.
   * @param {string} o.selfId This side's peer id.
   * @param {boolean} o.initiator Whether this side makes the first offer.
   * @param {MediaStream|null} o.localStream Local camera/microphone (may be null or lack a kind).
   * @param {RTCIceServer[]} o.iceServers
   * @param {RTCIceTransportPolicy} [o.iceTransportPolicy] 'relay' to use TURN relay candidates only.
   * @param {import('./signaling-client.js').SignalingClient} o.signaling
   * @param {(level: string, msg: string, extra?: any) => void} [o.log]
   */
  constructor({ id, name, meta, selfId, initiator, localStream, iceServers, iceTransportPolicy, signaling, log }) {
    super();
    this.id = id;
    this.name = name ?? null;
    this.meta = meta ?? null;
    this.selfId = selfId;
    this.polite = selfId < id;
    /** `whip` or `whep` when the remote peer is such a session (it only offers, once), else null. */
    this.endpoint = ENDPOINT_KINDS.includes(meta?.kind) ? meta.kind : null;
    this.initiator = initiator && !this.endpoint;
    this.signaling = signaling;
    this.log = log ?? (() => {});
    this.closed = false;
    /** @type {MediaStream} */
    this.remoteStream = new MediaStream();
    /** @type {Set<RTCDataChannel>} */
    this.channels = new Set();
    /** @type {PeerStats|null} */
    this.stats = null;
    /** Remote media state announced over signaling (`media-state` message), if any. */
    this.remoteMedia = { audio: null, video: null };
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.isSettingRemoteAnswerPending = false;
    this.offersSent = 0;
    this.offersReceived = 0;
    this.candidatesSent = 0;
    this.candidatesReceived = 0;
    this.endOfCandidatesSent = false;
    this.endOfCandidatesReceived = false;
    /** Incoming signaling is applied strictly in order, one message at a time. */
    this._queue = Promise.resolve();
    this._prevBytes = null;
    this._timers = { fallback: null, stats: null, channel: null, endpoint: null };
    this._endpointTold = false;

    const pc = new RTCPeerConnection({ iceServers: iceServers ?? [], iceTransportPolicy: iceTransportPolicy ?? 'all' });
    this.pc = pc;
    // A WHIP publisher only sends: our media has nowhere to go. A WHEP player gets it in our answer.
    this._addLocalMedia(this.endpoint === 'whip' ? null : localStream, this.initiator);
    if (this.initiator) this._attachChannel(pc.createDataChannel(CHAT_LABEL));

    pc.addEventListener('negotiationneeded', () => this._onNegotiationNeeded());
    pc.addEventListener('icecandidate', ({ candidate }) => this._onLocalCandidate(candidate));
    pc.addEventListener('track', (ev) => this._onTrack(ev));
    pc.addEventListener('datachannel', (ev) => this._attachChannel(ev.channel));
    pc.addEventListener('connectionstatechange', () => this._onConnectionState());
    pc.addEventListener('iceconnectionstatechange', () => this._changed());
    pc.addEventListener('signalingstatechange', () => this._changed());
    pc.addEventListener('icegatheringstatechange', () => this._changed());

    if (!this.initiator && !this.endpoint) {
      this._timers.fallback = setTimeout(() => this._fallbackOffer(), FALLBACK_OFFER_MS);
    }
    this._timers.stats = setInterval(() => this.updateStats(), 1500);
  }

  // ---------------------------------------------------------------- public

  /** `pc.connectionState`, or `closed`. @type {string} */
  get state() {
    return this.closed ? 'closed' : this.pc.connectionState;
  }

  /** Whether at least one chat data channel is open. @type {boolean} */
  get chatOpen() {
    for (const ch of this.channels) if (ch.readyState === 'open') return true;
    return false;
  }

  /**
   * Sends a chat text on the first open data channel.
   * @param {string} text
   * @returns {boolean} Whether it was sent.
   */
  /**
   * Uses `iceServers` from now on (fresh TURN credentials from the server's `ice-servers` message), so that an
   * ICE restart later in a long call still authenticates.
   * @param {RTCIceServer[]} iceServers
   */
  setIceServers(iceServers) {
    if (this.closed) return;
    try {
      this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers });
    } catch (err) {
      this.log('warn', `setConfiguration failed for ${this.id}: ${err?.message ?? err}`);
    }
  }

  sendChat(text) {
    for (const ch of this.channels) {
      if (ch.readyState === 'open') {
        ch.send(text);
        return true;
      }
    }
    return false;
  }

  /**
   * Applies one signaling message from this peer (`offer`, `answer` or `candidate`), in order.
   * @param {{type: string, sdp?: string, candidate?: RTCIceCandidateInit|null}} msg
   * @returns {Promise<void>}
   */
  handleSignal(msg) {
    this._queue = this._queue.then(() => this._applySignal(msg)).catch((err) => {
      this.log('warn', `signal ${msg.type} from ${this.id} failed: ${err && err.message}`);
    });
    return this._queue;
  }

  /** Closes the connection and its channels; idempotent. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this._timers.fallback);
    clearInterval(this._timers.stats);
    clearTimeout(this._timers.channel);
    clearTimeout(this._timers.endpoint);
    for (const ch of this.channels) {
      try { ch.close(); } catch { /* ignore */ }
    }
    try { this.pc.close(); } catch { /* ignore */ }
    this._changed();
  }

  /**
   * A plain, JSON-serialisable view of the link for UIs and tests.
   * @returns {object}
   */
  snapshot() {
    const pc = this.pc;
    return {
      id: this.id,
      name: this.name,
      polite: this.polite,
      initiator: this.initiator,
      connectionState: this.state,
      iceConnectionState: pc.iceConnectionState,
      signalingState: pc.signalingState,
      iceGatheringState: pc.iceGatheringState,
      dataChannel: this._channelState(),
      remoteTracks: this.remoteStream.getTracks().map((t) => ({ kind: t.kind, muted: t.muted, readyState: t.readyState })),
      remoteMedia: { ...this.remoteMedia },
      offersSent: this.offersSent,
      offersReceived: this.offersReceived,
      candidatesSent: this.candidatesSent,
      candidatesReceived: this.candidatesReceived,
      endOfCandidatesSent: this.endOfCandidatesSent,
      endOfCandidatesReceived: this.endOfCandidatesReceived,
      stats: this.stats ? { ...this.stats } : null,
    };
  }

  /** Polls `getStats()` once and updates {@link PeerStats}. */
  async updateStats() {
    if (this.closed) return;
    let report;
    try {
      report = await this.pc.getStats();
    } catch {
      return;
    }
    const now = performance.now();
    let inBytes = 0;
    let outBytes = 0;
    let pair = null;
    let video = null;
    const byId = new Map();
    report.forEach((s) => {
      byId.set(s.id, s);
      if (s.type === 'inbound-rtp') {
        inBytes += s.bytesReceived ?? 0;
        if (s.kind === 'video') video = s;
      } else if (s.type === 'outbound-rtp') {
        outBytes += s.bytesSent ?? 0;
      }
    });
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId) ?? pair;
    });
    if (!pair) {
      report.forEach((s) => {
        if (s.type === 'candidate-pair' && s.state === 'succeeded' && (s.nominated || s.selected)) pair = pair ?? s;
      });
    }
    const local = pair ? byId.get(pair.localCandidateId) : null;
    const remote = pair ? byId.get(pair.remoteCandidateId) : null;
    let inKbps = null;
    let outKbps = null;
    if (this._prevBytes && now > this._prevBytes.t) {
      const dt = (now - this._prevBytes.t) / 1000;
      inKbps = Math.max(0, ((inBytes - this._prevBytes.inBytes) * 8) / 1000 / dt);
      outKbps = Math.max(0, ((outBytes - this._prevBytes.outBytes) * 8) / 1000 / dt);
    }
    this._prevBytes = { t: now, inBytes, outBytes };
    const addr = (c) => (c ? `${c.address ?? c.ip ?? '?'}:${c.port ?? '?'}` : null);
    this.stats = {
      rttMs: pair && typeof pair.currentRoundTripTime === 'number' ? pair.currentRoundTripTime * 1000 : null,
      inKbps,
      outKbps,
      localType: local?.candidateType ?? null,
      remoteType: remote?.candidateType ?? null,
      localAddress: addr(local),
      remoteAddress: addr(remote),
      protocol: local?.protocol ?? null,
      frameWidth: video?.frameWidth ?? null,
      frameHeight: video?.frameHeight ?? null,
      framesPerSecond: video?.framesPerSecond ?? null,
    };
    if (!this.closed) this.dispatchEvent(new CustomEvent('stats', { detail: this.stats }));
  }

  // ---------------------------------------------------------------- internals

  _changed() {
    this.dispatchEvent(new CustomEvent('change', { detail: this.snapshot() }));
  }

  _channelState() {
    if (this.chatOpen) return 'open';
    const states = [...this.channels].map((c) => c.readyState);
    return states.includes('connecting') ? 'connecting' : states[0] ?? 'none';
  }

  /**
   * Local tracks go in with addTrack, so that on the answering side they attach to the offer's m-lines.
   * Kinds we cannot send are received anyway: the offering side adds recvonly transceivers for them.
   */
  _addLocalMedia(stream, offering) {
    const kinds = new Set();
    if (stream) {
      for (const track of stream.getTracks()) {
        this.pc.addTrack(track, stream);
        kinds.add(track.kind);
      }
    }
    if (offering) this._ensureRecvTransceivers(kinds);
  }

  _ensureRecvTransceivers(haveKinds) {
    const kinds = haveKinds ?? new Set(this.pc.getTransceivers().map((t) => t.receiver.track?.kind));
    for (const kind of ['audio', 'video']) {
      if (!kinds.has(kind)) this.pc.addTransceiver(kind, { direction: 'recvonly' });
    }
  }

  async _onNegotiationNeeded() {
    if (this.closed || this.endpoint || this.makingOffer || this.pc.signalingState !== 'stable') return;
    // Exactly one side starts: a non-initiator waits for the first offer (see the file comment). Its own
    // tracks are already added, so they go out in the answer; anything the offer could not carry triggers
    // negotiationneeded again once the first exchange is done, and then this side may offer.
    if (!this.initiator && !this.pc.remoteDescription) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      if (this.closed) return;
      if (this.pc.localDescription?.type !== 'offer') return;
      this.offersSent += 1;
      this.signaling.sendOffer(this.id, this.pc.localDescription.sdp);
      this.log('info', `offer -> ${this.id}`);
    } catch (err) {
      this.log('warn', `creating an offer for ${this.id} failed: ${err && err.message}`);
    } finally {
      this.makingOffer = false;
      this._changed();
    }
  }

  _fallbackOffer() {
    if (this.closed || this.pc.remoteDescription || this.pc.signalingState !== 'stable') return;
    this.log('info', `no offer from ${this.id} after ${FALLBACK_OFFER_MS} ms: offering`);
    this.initiator = true;
    if (![...this.channels].length) this._attachChannel(this.pc.createDataChannel(CHAT_LABEL));
    this._ensureRecvTransceivers();
    this._onNegotiationNeeded();
  }

  async _applySignal(msg) {
    if (this.closed) return;
    const pc = this.pc;
    if (msg.type === 'offer' || msg.type === 'answer') {
      const description = { type: msg.type, sdp: msg.sdp };
      if (msg.type === 'offer') {
        this.offersReceived += 1;
        clearTimeout(this._timers.fallback);
      }
      const readyForOffer = !this.makingOffer && (pc.signalingState === 'stable' || this.isSettingRemoteAnswerPending);
      const offerCollision = description.type === 'offer' && !readyForOffer;
      this.ignoreOffer = !this.polite && offerCollision;
      if (this.ignoreOffer) {
        this.log('info', `glare with ${this.id}: impolite, ignoring its offer`);
        return;
      }
      if (offerCollision) this.log('info', `glare with ${this.id}: polite, rolling back`);
      if (description.type === 'answer' && pc.signalingState !== 'have-local-offer') {
        this.log('warn', `ignoring an answer from ${this.id} in state ${pc.signalingState}`);
        return;
      }
      this.isSettingRemoteAnswerPending = description.type === 'answer';
      try {
        // Implicit rollback: setRemoteDescription(offer) in have-local-offer rolls our offer back.
        await pc.setRemoteDescription(description);
      } finally {
        this.isSettingRemoteAnswerPending = false;
      }
      if (description.type === 'offer') {
        await pc.setLocalDescription();
        if (this.endpoint) await this._gathered();
        if (!this.closed) this.signaling.sendAnswer(this.id, pc.localDescription.sdp);
        this.log('info', `answer -> ${this.id}`);
        // Safety net: local tracks the offer had no m-line for still need an offer of our own. Browsers fire
        // negotiationneeded again in that case; this covers ones that do not (the handler is idempotent).
        if (pc.getTransceivers().some((t) => t.mid === null && t.sender.track)) {
          setTimeout(() => this._onNegotiationNeeded(), 0);
        }
      }
      this._changed();
      this._ensureChannel();
    } else if (msg.type === 'candidate') {
      const c = msg.candidate;
      try {
        if (c === null || c === undefined || c.candidate === '') {
          this.endOfCandidatesReceived = true;
          // End of candidates. Without a remote description there is nothing to end, so skip it.
          if (pc.remoteDescription) await pc.addIceCandidate();
        } else {
          this.candidatesReceived += 1;
          await pc.addIceCandidate(c);
        }
      } catch (err) {
        if (!this.ignoreOffer) throw err;
      }
      this._changed();
    }
  }

  /** Resolves once ICE gathering is complete (or after GATHER_TIMEOUT_MS): the answer then holds every candidate. */
  _gathered() {
    const pc = this.pc;
    return new Promise((resolve) => {
      const done = () => {
        pc.removeEventListener('icegatheringstatechange', check);
        clearTimeout(timer);
        resolve();
      };
      const check = () => { if (pc.iceGatheringState === 'complete') done(); };
      const timer = setTimeout(done, GATHER_TIMEOUT_MS);
      pc.addEventListener('icegatheringstatechange', check);
      check();
    });
  }

  _endpointEnded(why) {
    if (this.closed || this._endpointTold) return;
    this._endpointTold = true;
    this.log('info', `media with ${this.endpoint} session ${this.id} ${why}: telling it`);
    this.signaling.sendMessage({ type: ENDPOINT_ENDED }, this.id);
  }

  _onLocalCandidate(candidate) {
    if (this.closed || this.endpoint) return; // a WHIP/WHEP session takes no trickle: they are in the answer
    if (candidate && candidate.candidate === '') return; // legacy per-m-line end marker
    this.signaling.sendCandidate(this.id, candidate ?? null);
    if (candidate) this.candidatesSent += 1;
    else this.endOfCandidatesSent = true;
  }

  _onTrack(ev) {
    const track = ev.track;
    if (!this.remoteStream.getTracks().includes(track)) {
      // One track per kind on screen: replace a stale one of the same kind.
      for (const old of this.remoteStream.getTracks()) {
        if (old.kind === track.kind) this.remoteStream.removeTrack(old);
      }
      this.remoteStream.addTrack(track);
    }
    const onChange = () => this._changed();
    track.addEventListener('mute', onChange);
    track.addEventListener('unmute', onChange);
    track.addEventListener('ended', onChange);
    this.dispatchEvent(new CustomEvent('track', { detail: { stream: this.remoteStream, track } }));
    this._changed();
  }

  _attachChannel(ch) {
    this.channels.add(ch);
    ch.addEventListener('open', () => this._changed());
    ch.addEventListener('close', () => {
      this.channels.delete(ch);
      this._changed();
    });
    ch.addEventListener('message', (ev) => {
      if (typeof ev.data === 'string') {
        this.dispatchEvent(new CustomEvent('chat', { detail: { text: ev.data, label: ch.label } }));
      } else {
        // Binary chat is not part of this UI; show it as text when it decodes.
        const buf = ev.data instanceof ArrayBuffer ? ev.data : null;
        if (buf) this.dispatchEvent(new CustomEvent('chat', { detail: { text: new TextDecoder().decode(buf), label: ch.label } }));
      }
    });
    this._changed();
  }

  /**
   * Makes sure a chat channel will exist. If the remote description has no data section, the other side
   * created no channel, so create one now (this renegotiates). If it has one, the channel arrives with the
   * `datachannel` event once SCTP is up; should it not have arrived 3 s after connecting, create one too.
   */
  _ensureChannel() {
    if (this.closed || this.endpoint || this.channels.size) return;
    const sdp = this.pc.remoteDescription?.sdp ?? '';
    if (!/^m=application /m.test(sdp)) {
      if (this.pc.signalingState === 'stable') {
        this.log('info', `no data channel offered by ${this.id}: creating one`);
        this._attachChannel(this.pc.createDataChannel(CHAT_LABEL));
      }
      return;
    }
    if (this.pc.connectionState === 'connected' && !this._timers.channel) {
      this._timers.channel = setTimeout(() => {
        this._timers.channel = null;
        if (!this.closed && this.channels.size === 0 && this.pc.signalingState === 'stable') {
          this.log('info', `no data channel from ${this.id} yet: creating one`);
          this._attachChannel(this.pc.createDataChannel(CHAT_LABEL));
        }
      }, 3000);
    }
  }

  _onConnectionState() {
    const st = this.pc.connectionState;
    this.log('info', `pc ${this.id}: ${st}`);
    if (this.endpoint && !this.closed) {
      // It cannot restart ICE with us: when the media failed, was closed, or stays disconnected for
      // ENDPOINT_DISCONNECTED_MS (a broadcaster that vanished), tell the session, which then leaves the room.
      clearTimeout(this._timers.endpoint);
      if (st === 'failed' || st === 'closed') this._endpointEnded(st);
      else if (st === 'disconnected') {
        this._timers.endpoint = setTimeout(() => this._endpointEnded('disconnected'), ENDPOINT_DISCONNECTED_MS);
      }
    } else if (st === 'failed' && !this.closed) {
      // An ICE restart renegotiates through the same perfect-negotiation path.
      this.log('info', `restarting ICE with ${this.id}`);
      try { this.pc.restartIce(); } catch { /* closed */ }
    }
    if (st === 'connected') {
      this.updateStats();
      this._ensureChannel();
    }
    this._changed();
  }
}
