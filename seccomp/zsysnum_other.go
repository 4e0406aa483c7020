//go:build !(linux && (amd64 || arm64))

package seccomp

// nativeArches is empty where bocker has no syscall table: Compile
// refuses, rather than install a filter that names the wrong syscalls.
var nativeArches []*archInfo
