// SPDX-License-Identifier: MIT
/**
 * @file The remote tiles: one `#tiles .tile[data-peer]` per PeerLink, cloned from `#tile-template`, showing
 * its video, connection state, media flags and connection stats.
 */
import { displayName, initials } from './names.js';

const STATE_TEXT = {
  new: 'Connecting',
  connecting: 'Connecting',
  connected: 'Connected',
  disconnected: 'Unstable',
  failed: 'Failed',
  closed: 'Closed',
};

function fmtKbps(v) {
  if (v === null || v === undefined) return '–';
  return v >= 1000 ? `${(v / 1000).toFixed(1)} Mb/s` : `${Math.round(v)} kb/s`;
}

function playRemote(video, soundBtn) {
  video.play().catch((err) => {
    if (err?.name !== 'NotAllowedError') return; // AbortError: a newer srcObject/play() took over
    // Autoplay with sound was blocked: play muted and offer a button to turn the sound on.
    video.muted = true;
    soundBtn.hidden = false;
    video.play().catch(() => {});
  });
}

export class TileGrid {
  /** @param {Record<string, HTMLElement>} el The page elements (`findElements()` in ui.js). */
  constructor(el) {
    this.el = el;
    /** @type {Map<string, {el: HTMLElement, video: HTMLVideoElement, off: Function[]}>} */
    this.entries = new Map();
  }

  /** Adds the tile of `link` and keeps it in step with the link's `change`, `stats` and `track` events. */
  add(link) {
    const frag = this.el.tileTemplate.content.cloneNode(true);
    const tile = frag.querySelector('.tile');
    const video = tile.querySelector('video');
    const soundBtn = tile.querySelector('[data-role="sound"]');
    tile.dataset.peer = link.id;
    const name = displayName(link.id, link.name);
    tile.querySelector('[data-role="name"]').textContent = name;
    tile.querySelector('.tile-initials').textContent = initials(name);
    tile.setAttribute('aria-label', `${name}: connecting`);
    soundBtn.setAttribute('aria-label', `Enable sound from ${name}`);
    soundBtn.addEventListener('click', () => {
      video.muted = false;
      video.play().then(() => { soundBtn.hidden = true; }).catch(() => {});
    });
    this.el.tiles.insertBefore(tile, this.el.emptyState);
    const entry = { el: tile, video, off: [] };
    this.entries.set(link.id, entry);

    const onChange = () => this.render(link);
    const onStats = () => this.renderStats(link);
    const onTrack = (ev) => {
      if (video.srcObject !== ev.detail.stream) video.srcObject = ev.detail.stream;
      playRemote(video, soundBtn);
      this.render(link);
    };
    link.addEventListener('change', onChange);
    link.addEventListener('stats', onStats);
    link.addEventListener('track', onTrack);
    entry.off.push(() => {
      link.removeEventListener('change', onChange);
      link.removeEventListener('stats', onStats);
      link.removeEventListener('track', onTrack);
    });
    this.render(link);
    this.renderStats(link);
  }

  /** @returns {boolean} Whether there was a tile for `id`. */
  remove(id) {
    const entry = this.entries.get(id);
    if (!entry) return false;
    entry.off.forEach((f) => f());
    entry.video.srcObject = null;
    entry.el.remove();
    this.entries.delete(id);
    return true;
  }

  render(link) {
    const entry = this.entries.get(link.id);
    if (!entry) return;
    const tile = entry.el;
    const st = link.state;
    const name = displayName(link.id, link.name);
    tile.dataset.state = st;
    tile.dataset.ice = link.pc.iceConnectionState;
    tile.dataset.signaling = link.pc.signalingState;
    tile.dataset.channel = link.snapshot().dataChannel;
    tile.dataset.polite = String(link.polite);
    tile.dataset.initiator = String(link.initiator);
    const badge = tile.querySelector('[data-role="state"]');
    badge.textContent = STATE_TEXT[st] ?? st;
    badge.dataset.state = st;
    tile.setAttribute('aria-label', `${name}: ${STATE_TEXT[st] ?? st}`);
    tile.querySelector('[data-role="name"]').textContent = name;
    tile.querySelector('.tile-initials').textContent = initials(name);
    const vt = link.remoteStream.getVideoTracks()[0];
    const videoOn = !!vt && vt.readyState === 'live' && !vt.muted && link.remoteMedia.video !== false;
    tile.dataset.video = videoOn ? 'on' : 'off';
    const at = link.remoteStream.getAudioTracks()[0];
    tile.dataset.audio = at && link.remoteMedia.audio !== false ? 'on' : 'off';
    tile.querySelector('[data-role="mic-flag"]').hidden = link.remoteMedia.audio !== false;
  }

  renderStats(link) {
    const entry = this.entries.get(link.id);
    if (!entry) return;
    const s = link.stats;
    const q = (k) => entry.el.querySelector(`[data-stat="${k}"]`);
    const box = entry.el.querySelector('[data-role="stats"]');
    q('rtt').textContent = s?.rttMs !== null && s?.rttMs !== undefined ? `${Math.round(s.rttMs)} ms` : '–';
    q('in').textContent = fmtKbps(s?.inKbps);
    q('out').textContent = fmtKbps(s?.outKbps);
    q('path').textContent = s?.localType ? `${s.localType} ↔ ${s.remoteType ?? '?'}` : '–';
    q('path').title = s?.localAddress ? `${s.localAddress} ↔ ${s.remoteAddress} (${s.protocol})` : '';
    box.dataset.rtt = s?.rttMs ?? '';
    box.dataset.inKbps = s?.inKbps ?? '';
    box.dataset.outKbps = s?.outKbps ?? '';
    box.dataset.localType = s?.localType ?? '';
    box.dataset.remoteType = s?.remoteType ?? '';
  }
}
