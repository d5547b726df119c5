package main

import (
	"strings"

	"github.com/rookery-ml/rookery/transport/p2p"
)

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// p2pListenAddrs are the multiaddrs a --p2p flag names: "default" is
// p2p.DefaultListen.
func p2pListenAddrs(flag string) []string {
	if flag == "default" {
		return p2p.DefaultListen
	}
	return splitList(flag)
}
