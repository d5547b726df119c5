package exec_test

import (
	"fmt"

	"github.com/rookery-ml/rookery/exec"
)

// The GPipe schedule of a chain of three parts with two micro-batches:
// F1@0 is micro-batch 1 forward on part 0.
func ExampleGPipe() {
	s, err := exec.GPipe([][]int{{1}, {2}, {}}, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Tasks)
	for p, tasks := range s.PerPart {
		fmt.Print("part ", p, ":")
		for _, i := range tasks {
			fmt.Print(" ", s.Tasks[i])
		}
		fmt.Println()
	}
	fmt.Println(s.Check())
	// Output:
	// [F0@0 F1@0 F0@1 F1@1 F0@2 F1@2 B1@2 B0@2 B1@1 B0@1 B1@0 B0@0]
	// part 0: F0@0 F1@0 B1@0 B0@0
	// part 1: F0@1 F1@1 B1@1 B0@1
	// part 2: F0@2 F1@2 B1@2 B0@2
	// <nil>
}
