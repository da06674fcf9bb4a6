local page = read_page(0, ARGV[1])
table.insert(page, 1, (feed_ids(KEYS[3])))
return page
