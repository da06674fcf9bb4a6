return (feed_ids(KEYS[1]))
