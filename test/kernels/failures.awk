# Prints why tests failed in one run's console log: each `--- FAIL` line
# with the last few messages its test printed (with -v a test's messages
# follow its `=== RUN` or `=== NAME` line, and the verdicts of subtests
# come later, with their parent's), plus panics and timeouts. At most
# `max` lines, so that a CI log's tail shows the reason.
# POSIX awk only (Debian's default awk is mawk).

BEGIN { if (max == "") max = 16; out = 0; cur = "" }

function emit(s) {
	if (out < max)
		print "    " substr(s, 1, 200)
	out++
}

{ gsub(/\r/, "") }

/^=== (RUN|NAME|CONT) / { cur = $3; next }

/^SOCKEYE-(BEGIN|EXIT) / {
	cur = ""
	if ($0 ~ / (124|137)$/)
		emit($0 " (timed out)")
	next
}

/--- FAIL: / {
	name = $0
	sub(/.*--- FAIL: /, "", name)
	sub(/ .*/, "", name)
	s = $0
	sub(/^[ \t]+/, "", s)
	emit(s)
	for (i = 1; i <= nmsg[name]; i++)
		emit("  " msg[name, i])
	nmsg[name] = 0
	next
}

/^panic: / { emit($0); next }

/_test\.go:[0-9]+: / {
	if (cur == "")
		next
	s = $0
	sub(/^[ \t]+/, "", s)
	if (nmsg[cur] == 4) {
		for (i = 1; i < 4; i++)
			msg[cur, i] = msg[cur, i + 1]
		nmsg[cur] = 3
	}
	msg[cur, ++nmsg[cur]] = s
}

END { if (out > max) print "    ... " (out - max) " more lines" }
