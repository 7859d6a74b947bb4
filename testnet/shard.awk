# A site's private shard for the demos: y = 3 x1 - 2 x2 + 1 + noise, as CSV.
# Shards differ in size and in where x1 lies, as real sites' data would.
#   awk -v i=INDEX -v n=ROWS -f testnet/shard.awk
BEGIN {
  srand(1000 + i); pi = atan2(0, -1)
  print "x1,x2,y"
  for (r = 0; r < n; r++) {
    x1 = rand() * 2 - 1 + 0.3 * (i % 4)
    x2 = rand() * 2 - 1
    noise = 0.3 * sqrt(-2 * log(1 - rand())) * cos(2 * pi * rand())
    printf "%.6f,%.6f,%.6f\n", x1, x2, 3 * x1 - 2 * x2 + 1 + noise
  }
}
