return read_page(ARGV[1], ARGV[2])
