-- Reads a user's index (KEYS[1]) on the primary: the sessions it lists.
return redis.call('ZRANGE', KEYS[1], 0, -1)
