# Helpers shared by the labs (testnet.sh and natlab.sh) and their drills:
# a table of outcomes, one row per fault or attempt, and a field of our
# own JSON. Sourced; defines functions only, and an empty table.

# A field of our own JSON: `iris ... --json` output and the worker's files.
# Top-level only, numbers and arrays of numbers; enough for what we read.
json_field() { # key < json: the first such field
  tr -d ' \n' | grep -o "\"$1\":\(\[[^]]*\]\|[^,}]*\)" | head -1 | sed "s/^\"$1\"://" | tr -d '[]"'
}

outcomes=()
# One row of the final table: fault, what should happen, what did, verdict.
outcome() { # fault expected observed ok(0/1)
  local verdict=FAILED
  [ "$4" -eq 1 ] && verdict=ok
  outcomes+=("$1|$2|$3|$verdict")
  printf '   %s: %s\n' "$verdict" "$3"
}

# The outcomes as a table under `header`.
print_outcomes() { # header
  { echo "$1"; printf '%s\n' "${outcomes[@]}"; } |
    awk -F'|' '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } }
      END { for (r = 1; r <= NR; r++) printf "%-*s  %-*s  %-*s  %s\n", w[1], cell[r, 1], w[2], cell[r, 2], w[3], cell[r, 3], cell[r, 4] }'
}

# How many outcomes were not as expected.
failed_outcomes() {
  local row failed=0
  for row in "${outcomes[@]}"; do [[ "$row" == *"|FAILED" ]] && failed=$((failed + 1)); done
  echo "$failed"
}

