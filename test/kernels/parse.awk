# Turns one run's console log into result rows (tab-separated):
#   K label uname status detail seconds package
#   B label binary import-path exit-status
#   R label pipeline rung result binary note
# Variables: label, runrc (exit status of the guest or host run: 124 or 137
# mean timed out), secs, pkgver, expected ("binary=import-path ..." that should
# have run; those that never started are reported with exit status "not-run").
# POSIX awk only (Debian's default awk is mawk).

function field(s, key,    v) {
	v = s
	sub("^" key "=", "", v)
	return v
}

function clean(s) {
	gsub(/\t/, " ", s)
	sub(/[ ]+$/, "", s)
	return s
}

BEGIN { OFS = "\t"; uname = ""; cur = ""; done = 0; panic = 0; n = 0; warnings = "" }

{
	gsub(/\r/, "")
}

/SOCKEYE-UNAME / {
	uname = $0
	sub(/.*SOCKEYE-UNAME /, "", uname)
	uname = clean(uname)
}

/SOCKEYE-WARN / {
	w = $0
	sub(/.*SOCKEYE-WARN /, "", w)
	warnings = warnings (warnings == "" ? "" : "; ") clean(w)
}

/SOCKEYE-BEGIN / {
	s = $0
	sub(/.*SOCKEYE-BEGIN /, "", s)
	split(s, a, " ")
	cur = a[1]
	order[++n] = cur
	pkg[cur] = a[2]
	rc[cur] = "none"
}

/SOCKEYE-EXIT / {
	s = $0
	sub(/.*SOCKEYE-EXIT /, "", s)
	split(s, a, " ")
	rc[a[1]] = a[2]
	cur = ""
}

/SOCKEYE-DONE/ { done = 1 }

/Kernel panic - not syncing/ { panic = 1 }

/KERNEL-MATRIX / {
	s = $0
	sub(/.*KERNEL-MATRIX /, "", s)
	if (!match(s, /^pipeline=[^ ]+ rung=[^ ]+ result=[^ ]+/)) {
		print "R", label, "(malformed)", "-", "fail", cur, clean("unparsable line: " s)
		next
	}
	head = substr(s, 1, RLENGTH)
	rest = substr(s, RLENGTH + 1)
	split(head, f, " ")
	p = field(f[1], "pipeline")
	r = field(f[2], "rung")
	res = field(f[3], "result")
	note = ""
	if (rest ~ /^ note=/)
		note = substr(rest, 7)
	if (res != "pass" && res != "fail" && res != "unsupported") {
		note = "invalid result \"" res "\"" (note == "" ? "" : ": " note)
		res = "fail"
	}
	print "R", label, p, r, res, cur, clean(note)
}

END {
	if (runrc == 124 || runrc == 137)
		status = "timeout"
	else if (panic)
		status = "panic"
	else if (!done)
		status = "incomplete"
	else
		status = "ok"
	detail = warnings
	if (status == "incomplete")
		detail = "run ended (status " runrc ") before all binaries finished" (detail == "" ? "" : "; " detail)
	if (uname == "")
		uname = "?"
	print "K", label, uname, status, (detail == "" ? "-" : detail), secs, pkgver
	for (i = 1; i <= n; i++)
		print "B", label, order[i], pkg[order[i]], rc[order[i]]
	m = split(expected, want, " ")
	for (i = 1; i <= m; i++) {
		split(want[i], kv, "=")
		if (!(kv[1] in rc))
			print "B", label, kv[1], kv[2], "not-run"
	}
}
