package agent

import "runtime/debug"

// Version is the release; builds add their VCS revision to it.
const Version = "0.1.0"

// versionString is what --version prints.
func versionString() string {
	v := "sockeye " + Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}
