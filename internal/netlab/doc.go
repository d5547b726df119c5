// Package netlab builds a small emulated internet of Linux network
// namespaces on one machine, for tests and examples that run seed nodes,
// providers behind NATs and requesters as separate processes: each in a
// namespace of its own, reached only through the routers and NATs of the
// lab, never through the host's own interfaces.
//
// Topology. New makes the internet, namespace <prefix>-inet, holding a
// bridge br0 with 198.18.0.1/24 (AddInternetAddr adds more addresses
// there, such as 198.18.0.2, for a second server). The internet
// namespace forwards nothing: it is a switch with servers on it. AddHome
// adds a home, two namespaces joined by a veth pair:
//
//	<prefix>-inet                 <prefix>-<name>r (router)           <prefix>-<name> (host)
//	br0 198.18.0.1/24 ── h<i> ─── wan 198.18.0.x/24 │ lan 198.19.i.1/24 ─── eth0 198.19.i.2/24
//	                                NAT, forwarding on                     default via 198.19.i.1
//
// The i-th home's router takes the next free 198.18.0.x, x from 10 up;
// its LAN is 198.19.i.0/24. Routers of different homes share the bridge,
// so they reach each other directly, as public hosts do; LAN addresses
// are routed nowhere outside their home. All addresses lie in
// 198.18.0.0/15, reserved for benchmarking networks. Veth pairs are made
// inside the namespaces, so no interface ever appears in the host's own
// namespace; loopback is up in every namespace.
//
// NAT kinds. Every router masquerades what leaves its WAN side, forwards
// from LAN to WAN and replies back, and drops whatever arrives at its WAN
// side unsolicited (except ping). Linux masquerade keeps a flow's source
// port when that port is free on the WAN address, so with Cone one local
// socket appears at one public address and port, the same as its local
// port, whatever it sends to: endpoint-independent mapping. Filtering is
// by conntrack, per flow: a packet passes inbound only as a reply to a
// flow the home opened, from the very address and port that flow went to
// (address- and port-dependent filtering, a "port-restricted cone"). Hole
// punching works through it when both sides send. With Symmetric the
// rule is masquerade fully-random: every new flow gets a random public
// port, so each destination sees another port, and a peer cannot predict
// the port to punch to.
//
// A value moves through it like this: New returns a Lab with its
// internet Node; AddHome returns a home's host Node, whose Router is the
// router's Node; Node.Command runs a program inside a namespace (ip netns
// exec); Close deletes every namespace, and with them their veths and
// nftables tables. Cleanup removes what a crashed run left.
//
// Errors: every external command runs under a timeout, and a failure is a
// *CmdError naming the command and its stderr. Available reports, as an
// error matching ErrUnavailable, why no lab can be built here (not root,
// ip, nft or sysctl missing, namespaces or NAT not creatable). Bad names
// and addresses are ErrName and ErrAddr; a lab of a prefix that exists
// already is ErrExists; a closed lab answers ErrClosed.
package netlab
