package core

// SetRunNotifiedHook makes Run call f once it catches its signals, so that
// a test sends a signal only when Run will receive it.
func SetRunNotifiedHook(l *Lifecycle, f func()) { l.testHookRunNotified = f }
