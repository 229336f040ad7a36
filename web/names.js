// SPDX-License-Identifier: MIT
/** @file Room and display names: room-name check, name clean-up, initials and the "Guest xxxx" fallback. */
import { ROOM_PATTERN } from './protocol.js';

export function validRoom(room) {
  return typeof room === 'string' && ROOM_PATTERN.test(room);
}

export function cleanName(name) {
  return (name ?? '').trim().slice(0, 64);
}

export function initials(name) {
  const parts = (name || '').trim().split(/\s+/).filter(Boolean);
  if (!parts.length) return '?';
  return (parts[0][0] + (parts.length > 1 ? parts[parts.length - 1][0] : '')).toUpperCase();
}

export function displayName(id, name) {
  return name && String(name).trim() ? String(name).trim() : `Guest ${String(id).slice(0, 4)}`;
}
