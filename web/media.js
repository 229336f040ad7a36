// SPDX-License-Identifier: MIT
/**
 * @file Local media: getUserMedia with its fallbacks and error classification, the mute / camera toggles and
 * the `media-state` payload that tells the others whether our microphone and camera are on.
 */

/**
 * The local camera/microphone stream. It writes `media`, `mediaError`, `audioMuted` and `videoOff` of the
 * page state; the toggles fire a `toggle` event (the page then re-renders and announces the new state).
 */
export class LocalMedia extends EventTarget {
  /**
   * @param {object} o
   * @param {object} o.state The page state.
   * @param {(level: string, msg: string, extra?: any) => void} o.log
   */
  constructor({ state, log }) {
    super();
    Object.assign(this, { state, log });
    /** @type {MediaStream|null} */
    this.stream = null;
  }

  get hasAudio() {
    return !!this.stream?.getAudioTracks().length;
  }

  get hasVideo() {
    return !!this.stream?.getVideoTracks().length;
  }

  /** Asks for camera and microphone (or neither, when `state.wantMedia` is off) and keeps the result in `stream`. */
  async start() {
    this.stream = await this._acquire();
  }

  stop() {
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
  }

  setAudioMuted(muted) {
    this.state.audioMuted = !!muted;
    for (const t of this.stream?.getAudioTracks() ?? []) t.enabled = !this.state.audioMuted;
    this.dispatchEvent(new Event('toggle'));
  }

  setVideoOff(off) {
    this.state.videoOff = !!off;
    for (const t of this.stream?.getVideoTracks() ?? []) t.enabled = !this.state.videoOff;
    this.dispatchEvent(new Event('toggle'));
  }

  /** The app message that says whether our mic/camera are on (sent through the server's `message` relay). */
  payload() {
    return {
      type: 'media-state',
      audio: this.hasAudio && !this.state.audioMuted,
      video: this.hasVideo && !this.state.videoOff,
    };
  }

  /** getUserMedia, classifying a failure into `state.media` (see the page state in app.js). */
  async _acquire() {
    const state = this.state;
    state.mediaError = null;
    if (!state.wantMedia) {
      state.media = 'off';
      return null;
    }
    const md = navigator.mediaDevices;
    if (!md || typeof md.getUserMedia !== 'function') {
      state.media = 'unsupported';
      state.mediaError = { name: 'NotSupportedError', message: 'navigator.mediaDevices.getUserMedia is unavailable' };
      return null;
    }
    const video = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24, max: 30 } };
    const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    try {
      const stream = await md.getUserMedia({ video, audio });
      state.media = 'ok';
      return stream;
    } catch (err) {
      state.mediaError = { name: err?.name ?? 'Error', message: err?.message ?? String(err) };
      this.log('warn', `getUserMedia failed: ${err?.name}: ${err?.message}`);
      if (err?.name === 'NotAllowedError' || err?.name === 'SecurityError') {
        state.media = 'denied';
        return null;
      }
      if (err?.name === 'NotReadableError' || err?.name === 'AbortError') {
        state.media = 'busy';
        return null;
      }
      if (err?.name === 'NotFoundError' || err?.name === 'OverconstrainedError' || err?.name === 'TypeError') {
        // One of the two may still exist: try each alone.
        for (const c of [{ audio }, { video }]) {
          try {
            const stream = await md.getUserMedia(c);
            state.media = 'partial';
            return stream;
          } catch { /* try the next */ }
        }
        state.media = 'missing';
        return null;
      }
      state.media = 'error';
      return null;
    }
  }
}
