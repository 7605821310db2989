# Reads the result rows written by parse.awk and prints the Markdown report.
# Problems (failures, expectation mismatches) are written one per line to the
# file named by -v problems=FILE.
# Variables: problems, expect (path of expect.txt), header (Markdown placed
# under the title).
# POSIX awk only.

function md(s) {
	gsub(/\|/, "\\|", s)
	return s
}

function rank(r) {
	return r == "fail" ? 3 : (r == "unsupported" ? 2 : 1)
}

# How closely an expect.txt label matches a kernel label: 3 the label
# itself, 2 "host" for a host-* run, 1 "*", 0 not at all. The closest
# expectation of a rung wins.
function labelmatch(pattern, label) {
	if (pattern == label)
		return 3
	if (pattern == "host" && label ~ /^host-/)
		return 2
	return pattern == "*"
}

function problem(s) {
	print s > problems
	nproblems++
}

BEGIN {
	FS = "\t"; nk = 0; nr = 0; nb = 0; ne = 0; nproblems = 0
	# expect.txt: whitespace separated, comments allowed.
	while (expect != "" && (getline line < expect) > 0) {
		sub(/#.*/, "", line)
		if (split(line, w, " ") < 4)
			continue
		ne++
		elabel[ne] = w[1]; epipe[ne] = w[2]; erung[ne] = w[3]; eres[ne] = w[4]
	}
}

$1 == "K" {
	nk++
	klabel[nk] = $2; kuname[$2] = $3; kstatus[$2] = $4; kdetail[$2] = $5
	ksecs[$2] = $6; kpkg[$2] = $7
	next
}

$1 == "B" {
	nb++
	blabel[nb] = $2; bname[nb] = $3; bpkg[nb] = $4; brc[nb] = $5
	bcount[$2]++
	if ($5 == "0")
		bpass[$2]++
	next
}

$1 == "R" {
	key = $2 SUBSEP $3 SUBSEP $4
	seenpipe[$2 SUBSEP $3] = 1
	if (!(key in rres)) {
		nr++
		rkey[nr] = key; rlabel[nr] = $2; rpipe[nr] = $3; rrung[nr] = $4
		rres[key] = $5; rnote[key] = $7
	} else if (rank($5) > rank(rres[key])) {
		# A rung reported twice keeps its worst result.
		rres[key] = $5; rnote[key] = $7
	}
	next
}

END {
	# Expectations: for each kernel and rung the closest one.
	for (i = 1; i <= nk; i++) {
		l = klabel[i]
		split("", best)
		for (e = 1; e <= ne; e++) {
			m = labelmatch(elabel[e], l)
			if (!m || !((l SUBSEP epipe[e]) in seenpipe))
				continue
			key = l SUBSEP epipe[e] SUBSEP erung[e]
			if (!(key in best) || m >= bestm[key]) {
				best[key] = e
				bestm[key] = m
			}
		}
		for (e = 1; e <= ne; e++) {
			key = l SUBSEP epipe[e] SUBSEP erung[e]
			if (!(key in best) || best[key] != e)
				continue
			expected[key] = eres[e]
			if (!(key in rres)) {
				problem(l ": " epipe[e] "/" erung[e] " not reported (expected " eres[e] ")")
				nr++
				rkey[nr] = key; rlabel[nr] = l; rpipe[nr] = epipe[e]; rrung[nr] = erung[e]
				rres[key] = "missing"; rnote[key] = "no KERNEL-MATRIX line"
				mismatch[key] = 1
				continue
			}
			ok = 0
			n = split(eres[e], alt, "|")
			for (a = 1; a <= n; a++)
				if (alt[a] == rres[key])
					ok = 1
			if (!ok) {
				mismatch[key] = 1
				problem(l ": " epipe[e] "/" erung[e] " is " rres[key] ", expected " eres[e] " (" rnote[key] ")")
			}
		}
	}
	# A reported failure counts unless it is expected.
	for (i = 1; i <= nr; i++) {
		key = rkey[i]
		if (rres[key] == "fail" && !(key in mismatch) && !(key in expected))
			problem(rlabel[i] ": " rpipe[i] "/" rrung[i] " failed (" rnote[key] ")")
	}
	for (i = 1; i <= nk; i++)
		if (kstatus[klabel[i]] != "ok")
			problem(klabel[i] ": run " kstatus[klabel[i]] " (" kdetail[klabel[i]] ")")
	for (i = 1; i <= nb; i++)
		if (brc[i] != "0")
			problem(blabel[i] ": " bpkg[i] " exit status " brc[i])

	print "# Kernel matrix"
	print ""
	print header
	print ""
	print "## Kernels"
	print ""
	print "| kernel | `uname -r` | package | status | seconds | test binaries passed |"
	print "| --- | --- | --- | --- | ---: | --- |"
	for (i = 1; i <= nk; i++) {
		l = klabel[i]
		st = kstatus[l]
		if (kdetail[l] != "-")
			st = st " (" kdetail[l] ")"
		printf "| %s | %s | %s | %s | %s | %d/%d |\n", l, kuname[l], md(kpkg[l]), md(st), ksecs[l], bpass[l], bcount[l]
	}
	print ""
	print "## Results"
	print ""
	print "| kernel | pipeline | rung | result | note |"
	print "| --- | --- | --- | --- | --- |"
	for (i = 1; i <= nk; i++) {
		l = klabel[i]
		for (j = 1; j <= nr; j++) {
			if (rlabel[j] != l)
				continue
			key = rkey[j]
			res = rres[key]
			if (key in mismatch)
				res = "**" res "** (expected " expected[key] ")"
			printf "| %s (%s) | %s | %s | %s | %s |\n", l, kuname[l], md(rpipe[j]), md(rrung[j]), md(res), md(rnote[key])
		}
	}
	print ""
	print "## Test binaries"
	print ""
	print "| kernel | package | exit status |"
	print "| --- | --- | --- |"
	for (i = 1; i <= nb; i++)
		printf "| %s | `%s` | %s |\n", blabel[i], bpkg[i], brc[i]
	if (nproblems > 0) {
		print ""
		print "## Problems"
		print ""
		close(problems)
		while ((getline line < problems) > 0)
			print "- " md(line)
	}
}
