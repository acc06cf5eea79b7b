package mqtt

import "unsafe"

// bytesToString aliases b as a string without copying; the string is only
// valid while b is (see the package doc on aliasing).
func bytesToString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
