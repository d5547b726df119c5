package netlab_test

import (
	"context"
	"fmt"
	"log"

	"github.com/rookery-ml/rookery/internal/netlab"
)

// A lab with one home behind a cone NAT; a program runs in the home.
// (No output is checked: building a lab needs root.)
func Example() {
	if err := netlab.Available(); err != nil {
		fmt.Println("no lab here:", err)
		return
	}
	ctx := context.Background()
	lab, err := netlab.New(ctx, "rkdoc")
	if err != nil {
		log.Fatal(err)
	}
	defer lab.Close()
	home, err := lab.AddHome("a", netlab.Cone)
	if err != nil {
		log.Fatal(err)
	}
	out, err := home.Command(ctx, "ping", "-c", "1", "-W", "1", lab.Internet().IP).CombinedOutput()
	fmt.Printf("%s at %s behind %s: %s %v\n", home.Name, home.IP, home.PublicIP, out, err)
}
