#!lua name=signaling_rooms_1
-- The shared room state of a signaling cluster, changed only here, atomically: one Redis function per change.
-- signaling/cluster/schema.py documents the keys and channels; every function takes the key prefix first.
--
-- Every membership change bumps P:version and is published on P:members as "room|version|change", so that
-- each node's view of its rooms (a snapshot plus the changes after it) never misses one or applies one twice.
--
-- Fenced functions take, after the prefix, a deadline in Redis's own clock (seconds): the time after which the
-- node that sent them no longer waits for their answer. One that reaches Redis later (Redis was paused, or
-- the node's link failed with the command in flight) is refused with {'stale'} and changes nothing: work a node
-- gave up on must not run behind its back. Their replies start with a status: 'ok', 'stale', or another word.
--
-- Every key expires unless a node keeps it: the cluster-wide ones and a node's member set at each heartbeat, a
-- member's keys (and its room's) at its join, its resume, its messages and, a batch per heartbeat, while its
-- connection is on a live node; a session in its grace period until STATE_TTL_MS after its grace. So nothing is
-- left in Redis STATE_TTL_MS after the last node stopped or died, and no key lives without an owner.
local STATE_TTL_MS = 3600000
-- The cluster-wide keys (suffixes after P:).
local GLOBAL_KEYS = {'nodes', 'dead', 'rooms', 'peers', 'leases', 'graces', 'order', 'version', 'seq', 'wh', 'wh:on',
  'wh:lost'}
-- Members whose keys a heartbeat renews, at most (a node's members are renewed over several heartbeats).
local RENEW_BATCH = 200

-- Register a fenced function: `body(P, a)` runs only if its deadline (a[2]) has not passed in Redis's clock.
local function register_fenced(name, body)
  redis.register_function(name, function(_, a)
    local t = redis.call('TIME')
    if tonumber(t[1]) + tonumber(t[2]) / 1000000 > tonumber(a[2]) then
      return {'stale'}
    end
    return body(a[1], a)
  end)
end

-- Renew the keys of `peer` (and of its room, `room` if known) for STATE_TTL_MS past `from_ms` (0: now).
local function renew(P, peer, room, from_ms)
  local key = P .. ':m:' .. peer
  room = room or redis.call('HGET', key, 'room')
  local keys = {key, P .. ':k:' .. peer}
  if room then
    keys[3] = P .. ':r:' .. room
  end
  for _, k in ipairs(keys) do
    if from_ms > 0 then
      redis.call('PEXPIREAT', k, math.floor(from_ms) + STATE_TTL_MS)
    else
      redis.call('PEXPIRE', k, STATE_TTL_MS)
    end
  end
end

-- `peer` no longer counts against the ghost budgets it was charged to (field g: their names).
local function unghost(P, peer, key)
  local budgets = redis.call('HGET', key, 'g')
  if budgets and budgets ~= '' then
    for name in string.gmatch(budgets, '[^ ]+') do
      redis.call('ZREM', P .. ':g:' .. name, peer)
    end
    redis.call('HSET', key, 'g', '')
  end
end

-- Renew the cluster-wide keys (and a node's member set), which joins create and heartbeats keep.
local function renew_globals(P, node)
  for _, k in ipairs(GLOBAL_KEYS) do
    redis.call('PEXPIRE', P .. ':' .. k, STATE_TTL_MS)
  end
  redis.call('PEXPIRE', P .. ':n:' .. node, STATE_TTL_MS)
end

local function member_fields(P, peer)
  return redis.call('HMGET', P .. ':m:' .. peer, 'j', 'node', 'res')
end

-- The members of a room, in join order: j, node, res for each.
local function members_of(P, room)
  local out = {}
  for _, peer in ipairs(redis.call('ZRANGE', P .. ':r:' .. room, 0, -1)) do
    local f = member_fields(P, peer)
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
    out[#out + 1] = f[3]
  end
  return out
end

-- Record a webhook event of `room` (library.lua and signaling/rooms/events.py agree on the kinds): it takes the
-- room's next number (P:seq, kept whether or not webhooks are on: the server API shows it) and, when a node with
-- webhooks registered the outbox (P:wh:on: the cluster's id nonce and the outbox's bound), goes into the outbox
-- stream P:wh, in the same atomic step as the change it tells of. A full outbox counts it in P:wh:lost instead.
local function record(P, room, kind, peer, detail)
  local seq = redis.call('HINCRBY', P .. ':seq', room, 1)
  redis.call('PEXPIRE', P .. ':seq', STATE_TTL_MS)
  local on = redis.call('HMGET', P .. ':wh:on', 'n', 'max')
  if not on[1] then
    return
  end
  local stream = P .. ':wh'
  if redis.call('XLEN', stream) >= tonumber(on[2]) then
    redis.call('INCR', P .. ':wh:lost')
    redis.call('PEXPIRE', P .. ':wh:lost', STATE_TTL_MS)
    return
  end
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('XADD', stream, '*', 't', kind, 'r', room, 's', seq, 'ms', ms, 'n', on[1], 'p', peer or '',
    'd', detail or '')
  redis.call('PEXPIRE', stream, STATE_TTL_MS)
end

local function publish_change(P, room, change)
  local version = redis.call('INCR', P .. ':version')
  if redis.call('EXISTS', P .. ':r:' .. room) == 1 then
    redis.call('HSET', P .. ':rooms', room, version)
  else
    redis.call('HDEL', P .. ':rooms', room)
  end
  redis.call('PUBLISH', P .. ':members', room .. '|' .. version .. '|' .. change)
  return version
end

-- Remove a member (`reason`: its peer.left event's); returns {room, j, node, res, <the members left: j, node,
-- res...>} or nil.
local function remove(P, peer, reason)
  local key = P .. ':m:' .. peer
  local f = redis.call('HMGET', key, 'room', 'j', 'node', 'res', 'lease')
  if not f[1] then
    return nil
  end
  local room = f[1]
  redis.call('ZREM', P .. ':r:' .. room, peer)
  if f[3] and f[3] ~= '' then
    redis.call('SREM', P .. ':n:' .. f[3], peer)
  end
  if f[5] and f[5] ~= '' then
    redis.call('HDEL', P .. ':leases', f[5])
  end
  redis.call('ZREM', P .. ':graces', peer)
  redis.call('SREM', P .. ':peers', peer)
  unghost(P, peer, key)
  redis.call('DEL', key, P .. ':k:' .. peer)
  record(P, room, 'peer.left', peer, reason)
  if redis.call('EXISTS', P .. ':r:' .. room) == 0 then
    record(P, room, 'room.finished')
    redis.call('HDEL', P .. ':seq', room)
  end
  publish_change(P, room, 'l|' .. peer)
  local out = {room, f[2], f[3], f[4]}
  for _, x in ipairs(members_of(P, room)) do
    out[#out + 1] = x
  end
  return out
end

-- End `peer`'s membership, its departure appended to `gone`; false when it was no member (any more).
local function depart(P, peer, gone, reason)
  local departure = remove(P, peer, reason)
  if departure then
    gone[#gone + 1] = departure
  end
  return departure ~= nil
end

-- A node is gone (its heartbeat stopped, or it retired): it is no longer registered, and its members are
-- handed out by orphan(), a bounded number per call.
local function bury(P, node)
  redis.call('HDEL', P .. ':nodes', node)
  redis.call('DEL', P .. ':alive:' .. node)
  redis.call('SADD', P .. ':dead', node)
end

-- Up to `budget` members connected to a node that is gone: resumable ones get a grace period (they may resume
-- on another node), the others leave (`reason`); their departures are appended to `gone`. Returns the budget
-- left. A node that died ('node-lost') marks its resumable ones, whose grace may run out with that reason.
local function orphan(P, node, grace_until, budget, gone, reason)
  local set = P .. ':n:' .. node
  for _, peer in ipairs(redis.call('SRANDMEMBER', set, budget)) do
    budget = budget - 1
    local key = P .. ':m:' .. peer
    local f = redis.call('HMGET', key, 'res', 'lease')
    if grace_until > 0 and f[1] == '1' and f[2] and f[2] ~= '' then
      redis.call('ZADD', P .. ':graces', 'NX', grace_until, peer)
      redis.call('HSET', key, 'node', '', 'why', reason == 'node-lost' and reason or '')
      redis.call('SREM', set, peer)
      renew(P, peer, nil, grace_until * 1000)
    elseif not depart(P, peer, gone, reason) then
      redis.call('SREM', set, peer)
    end
  end
  if redis.call('SCARD', set) == 0 then
    redis.call('SREM', P .. ':dead', node)
  end
  return budget
end

-- P, node, ttl_ms, now[, nonce, outbox bound]: a node starts; one that sends webhooks turns the outbox on (the
-- first such node's nonce stays the cluster's, the part of every event id that tells clusters apart).
redis.register_function('signaling_register', function(_, a)
  local P, node = a[1], a[2]
  redis.call('HSET', P .. ':nodes', node, a[4])
  if a[5] then
    redis.call('HSETNX', P .. ':wh:on', 'n', a[5])
    redis.call('HSET', P .. ':wh:on', 'max', a[6])
  end
  redis.call('SET', P .. ':alive:' .. node, '1', 'PX', a[3])
  renew_globals(P, node)
  return 1
end)

-- P, deadline, node, ttl_ms, cursor: a node is alive; it renews the cluster-wide keys, its member set, and the
-- keys of a batch of its members (from `cursor`, '0' to start over). {'dead'} when it was declared dead
-- meanwhile; else {'ok', rooms, peers, nodes, next cursor}.
register_fenced('signaling_beat', function(P, a)
  local node = a[3]
  if redis.call('HEXISTS', P .. ':nodes', node) == 0 then
    return {'dead'}
  end
  redis.call('SET', P .. ':alive:' .. node, '1', 'PX', a[4])
  renew_globals(P, node)
  local set = P .. ':n:' .. node
  local scan = redis.call('SSCAN', set, a[5], 'COUNT', RENEW_BATCH)
  for _, peer in ipairs(scan[2]) do
    renew(P, peer, nil, 0)
  end
  return {
    'ok', redis.call('HLEN', P .. ':rooms'), redis.call('SCARD', P .. ':peers'), redis.call('HLEN', P .. ':nodes'), scan[1]
  }
end)

-- P, node, grace_until, limit: a node stops (its resumable sessions may resume elsewhere). Returns
-- {members of it still to hand out, <departures>}: call again until the first is 0.
redis.register_function('signaling_retire', function(_, a)
  local P, node = a[1], a[2]
  bury(P, node)
  if redis.call('GET', P .. ':wh:lead') == node then
    redis.call('DEL', P .. ':wh:lead')
  end
  local gone = {}
  orphan(P, node, tonumber(a[3]), tonumber(a[4]), gone, 'dropped')
  return {redis.call('SCARD', P .. ':n:' .. node), gone}
end)

-- P, room: the version and the room's last event number the members reflect, then the members.
redis.register_function('signaling_snapshot', function(_, a)
  local P = a[1]
  local out = {tonumber(redis.call('GET', P .. ':version') or '0'), tonumber(redis.call('HGET', P .. ':seq', a[2]) or '0')}
  for _, x in ipairs(members_of(P, a[2])) do
    out[#out + 1] = x
  end
  return out
end)

-- P, after, limit: the rooms named after `after` (byte order), at most `limit`, each followed by its number of
-- members and its last event number: {room, n, seq, room, n, seq...}. Read-only, for the server API; sorting all names is bounded by max_rooms.
redis.register_function{
  function_name = 'signaling_rooms',
  flags = {'no-writes'},
  callback = function(_, a)
    local P, after, limit = a[1], a[2], tonumber(a[3])
    local names = {}
    for _, room in ipairs(redis.call('HKEYS', P .. ':rooms')) do
      if room > after then
        names[#names + 1] = room
      end
    end
    table.sort(names)
    local out = {}
    for i = 1, math.min(limit, #names) do
      out[#out + 1] = names[i]
      out[#out + 1] = redis.call('ZCARD', P .. ':r:' .. names[i])
      out[#out + 1] = tonumber(redis.call('HGET', P .. ':seq', names[i]) or '0')
    end
    return out
  end,
}

-- P, deadline, peer, room, j, node, res, lease, max_peers, max_rooms, listed: join within the limits.
-- Returns {'ok', <members already there: j, node, res...; none unless listed is '1'>}, or {'taken'} (the peer
-- id is a member: checked first), {'room-full'}, {'server-full'}.
register_fenced('signaling_join', function(P, a)
  local peer, room, node, lease = a[3], a[4], a[6], a[8]
  local key = P .. ':m:' .. peer
  if redis.call('EXISTS', key) == 1 then
    return {'taken'}
  end
  local room_key = P .. ':r:' .. room
  local count = redis.call('ZCARD', room_key)
  if count == 0 then
    if redis.call('HLEN', P .. ':rooms') >= tonumber(a[10]) then
      return {'server-full'}
    end
  elseif count >= tonumber(a[9]) then
    return {'room-full'}
  end
  local out = {'ok'}
  if a[11] == '1' then
    for _, x in ipairs(members_of(P, room)) do
      out[#out + 1] = x
    end
  end
  if count == 0 then
    record(P, room, 'room.started')
  end
  record(P, room, 'peer.joined', peer, a[5])
  redis.call('ZADD', room_key, redis.call('INCR', P .. ':order'), peer)
  redis.call('HSET', key, 'room', room, 'j', a[5], 'node', node, 'res', a[7], 'lease', lease, 'seq', 0, 'kb', 0)
  if lease ~= '' then
    redis.call('HSET', P .. ':leases', lease, peer)
  end
  redis.call('SADD', P .. ':n:' .. node, peer)
  redis.call('SADD', P .. ':peers', peer)
  publish_change(P, room, 'j|' .. node .. '|' .. a[7] .. '|' .. a[5])
  renew(P, peer, room, 0)
  renew_globals(P, node)
  return out
end)

-- P, deadline, peer, lease ('' for any), reason: leave. Returns {'ok', <departure>} or {'none'}.
register_fenced('signaling_leave', function(P, a)
  local peer, lease = a[3], a[4]
  if lease ~= '' and redis.call('HGET', P .. ':m:' .. peer, 'lease') ~= lease then
    return {'none'}
  end
  local departure = remove(P, peer, a[5])
  if not departure then
    return {'none'}
  end
  return {'ok', departure}
end)

-- P, deadline, peer, lease, until, then (budget, limit) pairs: the connection of a resumable session is gone; its
-- grace runs until `until`. The session is a ghost now, charged to each budget (P:g:<budget>: the ghosts of a
-- client address, of a node...); a budget over its limit ends its oldest ghosts at once. Returns
-- {'ok', <their departures>}, or {'none'} when the lease has moved on (the session was resumed meanwhile).
register_fenced('signaling_release', function(P, a)
  local peer, grace_until = a[3], tonumber(a[5])
  local key = P .. ':m:' .. peer
  local f = redis.call('HMGET', key, 'lease', 'node')
  if f[1] ~= a[4] then
    return {'none'}
  end
  redis.call('ZADD', P .. ':graces', grace_until, peer)
  if f[2] and f[2] ~= '' then
    redis.call('SREM', P .. ':n:' .. f[2], peer)
  end
  renew(P, peer, nil, grace_until * 1000)
  local out, names = {'ok'}, {}
  for i = 6, #a, 2 do
    local budget = P .. ':g:' .. a[i]
    names[#names + 1] = a[i]
    redis.call('ZADD', budget, grace_until, peer)
    redis.call('PEXPIREAT', budget, math.floor(grace_until * 1000) + STATE_TTL_MS)
  end
  redis.call('HSET', key, 'node', '', 'g', table.concat(names, ' '), 'why', '')
  for i = 6, #a, 2 do
    local budget = P .. ':g:' .. a[i]
    local over = redis.call('ZCARD', budget) - tonumber(a[i + 1])
    if over > 0 then
      for _, ghost in ipairs(redis.call('ZRANGE', budget, 0, over - 1)) do
        if not depart(P, ghost, out, 'expired') then
          redis.call('ZREM', budget, ghost)
        end
      end
    end
  end
  return out
end)

-- P, deadline, digest, new_digest, node, now: resume the session of a live lease on `node`.
-- Returns {'ok', peer, room, j, res, previous node} or {'none'}.
register_fenced('signaling_claim', function(P, a)
  local digest, node = a[3], a[5]
  local peer = redis.call('HGET', P .. ':leases', digest)
  if not peer then
    return {'none'}
  end
  local until_ = redis.call('ZSCORE', P .. ':graces', peer)
  if until_ and tonumber(until_) <= tonumber(a[6]) then
    return {'none'}
  end
  local key = P .. ':m:' .. peer
  local f = redis.call('HMGET', key, 'room', 'j', 'res', 'node')
  redis.call('HDEL', P .. ':leases', digest)
  redis.call('HSET', P .. ':leases', a[4], peer)
  redis.call('HSET', key, 'lease', a[4], 'node', node, 'why', '')
  redis.call('ZREM', P .. ':graces', peer)
  unghost(P, peer, key)
  renew(P, peer, f[1], 0)
  renew_globals(P, node)
  local previous = f[4] or ''
  if previous ~= '' then
    redis.call('SREM', P .. ':n:' .. previous, peer)
  end
  redis.call('SADD', P .. ':n:' .. node, peer)
  publish_change(P, f[1], 'n|' .. peer .. '|' .. node)
  return {'ok', peer, f[1], f[2], f[3], previous}
end)

-- P, deadline, peer, digest, previous_digest, until: undo a claim whose resume could not be completed: the
-- lease, if `digest` still holds it, goes back to `previous_digest`, in a grace period until `until`.
register_fenced('signaling_unclaim', function(P, a)
  local peer, digest = a[3], a[4]
  local key = P .. ':m:' .. peer
  local f = redis.call('HMGET', key, 'lease', 'node', 'room')
  if f[1] ~= digest then
    return {'none'}
  end
  redis.call('HDEL', P .. ':leases', digest)
  redis.call('HSET', P .. ':leases', a[5], peer)
  redis.call('HSET', key, 'lease', a[5], 'node', '')
  if f[2] and f[2] ~= '' then
    redis.call('SREM', P .. ':n:' .. f[2], peer)
  end
  redis.call('ZADD', P .. ':graces', a[6], peer)
  renew(P, peer, f[3], tonumber(a[6]) * 1000)
  publish_change(P, f[3], 'n|' .. peer .. '|')
  return {'ok'}
end)

-- P, now, grace_until, limit: end what ended without its connection saying so: the members of nodes whose
-- heartbeat stopped, and sessions whose grace ran out. Returns the departures; at most `limit` members are
-- handed out per call (the rest by the next calls), so that no call holds Redis for long.
redis.register_function('signaling_sweep', function(_, a)
  local P, now, grace_until = a[1], tonumber(a[2]), tonumber(a[3])
  local budget = tonumber(a[4])
  local gone = {}
  for _, node in ipairs(redis.call('HKEYS', P .. ':nodes')) do
    if redis.call('EXISTS', P .. ':alive:' .. node) == 0 then
      bury(P, node)
    end
  end
  for _, node in ipairs(redis.call('SMEMBERS', P .. ':dead')) do
    if budget <= 0 then
      break
    end
    budget = orphan(P, node, grace_until, budget, gone, 'node-lost')
  end
  if budget > 0 then
    for _, peer in ipairs(redis.call('ZRANGEBYSCORE', P .. ':graces', '-inf', now, 'LIMIT', 0, budget)) do
      local why = redis.call('HGET', P .. ':m:' .. peer, 'why')
      if not depart(P, peer, gone, (why and why ~= '') and why or 'expired') then
        redis.call('ZREM', P .. ':graces', peer)
      end
    end
  end
  return gone
end)

-- P, node, after, limit, lease_ms: the webhook sender of `node` asks for the outbox's events after stream id
-- `after` ('' for the first). One node at a time sends (P:wh:lead, a lease it renews with each call), so each
-- event is sent once for the cluster, in order; when its lease lapses (the node died) another takes over and
-- starts from the oldest event not yet done. Returns {'follow'} to the others, else
-- {'lead', events waiting, events lost, <up to `limit` entries: id, fields>}.
redis.register_function('signaling_outbox_take', function(_, a)
  local P, node, limit = a[1], a[2], tonumber(a[4])
  local lead = P .. ':wh:lead'
  local holder = redis.call('GET', lead)
  if holder and holder ~= node then
    return {'follow'}
  end
  redis.call('SET', lead, node, 'PX', a[5])
  local stream = P .. ':wh'
  local out = {'lead', redis.call('XLEN', stream), tonumber(redis.call('GET', P .. ':wh:lost') or '0')}
  if limit > 0 then
    local start = a[3] == '' and '-' or '(' .. a[3]
    out[4] = redis.call('XRANGE', stream, start, '+', 'COUNT', limit)
  end
  return out
end)

-- P, sender, number, max_count, max_bytes, then (peers, head, tail) for each text, `peers` its resumable
-- recipients joined by commas: number the text for each (head .. seq .. tail), keep it (within the bounds), and
-- publish it to the nodes their connections are on: one record per node per text, naming its recipients with
-- their numbers ("s|peer:seq,peer:seq|head"; the receiver adds the tail), never a copy per recipient; one
-- message per node, records joined by newlines. A peer gone meanwhile is skipped. `number` is the call's place
-- in its sending process's order: a call sent again after a lost link runs only if it has not run yet (-1 if
-- it has).
redis.register_function('signaling_deliver', function(_, a)
  local P, max_count, max_bytes = a[1], tonumber(a[4]), tonumber(a[5])
  local done = P .. ':sent:' .. a[2]
  if tonumber(redis.call('GET', done) or '0') >= tonumber(a[3]) then
    return -1
  end
  redis.call('SET', done, a[3], 'EX', 86400)
  local out, order = {}, {}
  for i = 6, #a, 3 do
    local head, tail = a[i + 1], a[i + 2]
    local named = {}
    for peer in string.gmatch(a[i], '[^,]+') do
      local key = P .. ':m:' .. peer
      if redis.call('HEXISTS', key, 'seq') == 1 then
        local seq = redis.call('HINCRBY', key, 'seq', 1)
        local text = head .. seq .. tail
        local kept = P .. ':k:' .. peer
        local count = redis.call('RPUSH', kept, text)
        if count == 1 then
          local ttl = redis.call('PTTL', key)
          if ttl > 0 then
            redis.call('PEXPIRE', kept, ttl)
          end
        end
        local bytes = redis.call('HINCRBY', key, 'kb', #text)
        while count > max_count or (bytes > max_bytes and count > 1) do
          bytes = redis.call('HINCRBY', key, 'kb', -#redis.call('LPOP', kept))
          count = count - 1
        end
        local node = redis.call('HGET', key, 'node')
        if node and node ~= '' then
          local recipients = named[node]
          if not recipients then
            recipients = {}
            named[node] = recipients
            if not out[node] then
              out[node] = {}
              order[#order + 1] = node
            end
          end
          recipients[#recipients + 1] = peer .. ':' .. seq
        end
      end
    end
    for node, recipients in pairs(named) do
      local records = out[node]
      records[#records + 1] = 's|' .. table.concat(recipients, ',') .. '|' .. head
    end
  end
  for _, node in ipairs(order) do
    redis.call('PUBLISH', P .. ':node:' .. node, table.concat(out[node], '\n'))
  end
  return #order
end)

-- P, peer, last_seq: the kept messages after last_seq: {'ok', texts...}, or {'gap'} when they no longer reach
-- back that far (or last_seq is past the last one sent).
redis.register_function('signaling_kept', function(_, a)
  local P, peer, last = a[1], a[2], tonumber(a[3])
  local seq = tonumber(redis.call('HGET', P .. ':m:' .. peer, 'seq'))
  if not seq or last < 0 or last > seq then
    return {'gap'}
  end
  if last == seq then
    return {'ok'}
  end
  local kept = P .. ':k:' .. peer
  local first = seq - redis.call('LLEN', kept) + 1
  if first > last + 1 then
    return {'gap'}
  end
  local out = {'ok'}
  for _, text in ipairs(redis.call('LRANGE', kept, last + 1 - first, -1)) do
    out[#out + 1] = text
  end
  return out
end)
