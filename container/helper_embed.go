//go:build bocker_helper

package container

import _ "embed"

//go:embed bocker-ctr
var embeddedHelper []byte

func init() { helperBinary = embeddedHelper }
