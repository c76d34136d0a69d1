// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus) — the library
// Flux's health checks and `kubectl wait`-style tools use — says about Kubernetes objects:
//
//	kstatus [FILE]
//
// FILE (default: standard input) is `kubectl get -o json` output: one object or a List.
// Each object gives one JSON line: {"name": ..., "status": ..., "message": ...}, status being
// InProgress, Failed, Current, Terminating, NotFound or Unknown.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// Verdict is one object's result.
type Verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) > 1 {
		return fmt.Errorf("usage: kstatus [FILE]")
	}
	objects, err := readObjects(args, stdin)
	if err != nil {
		return err
	}
	encoder := json.NewEncoder(stdout)
	for _, object := range objects {
		result, err := status.Compute(object)
		if err != nil {
			return fmt.Errorf("%s: %w", object.GetName(), err)
		}
		verdict := Verdict{Name: object.GetName(), Status: result.Status.String(), Message: result.Message}
		if err := encoder.Encode(verdict); err != nil {
			return err
		}
	}
	return nil
}

func readObjects(args []string, stdin io.Reader) ([]*unstructured.Unstructured, error) {
	input := stdin
	if len(args) > 0 && args[0] != "-" {
		file, err := os.Open(args[0])
		if err != nil {
			return nil, err
		}
		defer file.Close()
		input = file
	}
	raw, err := io.ReadAll(input)
	if err != nil {
		return nil, err
	}
	object := &unstructured.Unstructured{}
	if err := object.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object or List: %w", err)
	}
	if !object.IsList() {
		return []*unstructured.Unstructured{object}, nil
	}
	list, err := object.ToList()
	if err != nil {
		return nil, err
	}
	objects := make([]*unstructured.Unstructured, 0, len(list.Items))
	for i := range list.Items {
		objects = append(objects, &list.Items[i])
	}
	return objects, nil
}
