// amp-demo-function: the function from the amp functions guide.
// Its input comes on stdin, its result goes to stdout and its log to stderr.
package main

import (
	"fmt"
	"io"
	"log"
	"os"
	"strings"
)

func main() {
	input, err := io.ReadAll(os.Stdin) // the call's input
	if err != nil {
		log.Fatal("Unable to read standard input: ", err)
	}
	log.Println("input", string(input)) // the function's log, on stderr
	//lint:ignore SA1019 strings.Title is what the guide's demo uses; ASCII input is all it needs.
	fmt.Println(strings.Title(string(input))) // the result, on stdout
}
