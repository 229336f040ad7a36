// SPDX-License-Identifier: MIT
/** @file The page log: recent lines kept for `app.log` (and for debugging failed tests), echoed to the console. */

/**
 * @param {number} [limit=500] How many recent lines to keep.
 * @returns {{lines: {t: number, level: string, msg: string}[], log: (level: string, msg: string, extra?: any) => void}}
 */
export function createLog(limit = 500) {
  const lines = [];
  function log(level, msg, extra) {
    const line = { t: Math.round(performance.now()), level, msg };
    lines.push(line);
    if (lines.length > limit) lines.shift();
    // warn for unexpected but handled conditions; info-level chatter stays at debug. Nothing here is an error.
    if (level === 'warn') console.warn('[call]', msg, extra ?? '');
    else console.debug('[call]', msg, extra ?? '');
  }
  return { lines, log };
}
