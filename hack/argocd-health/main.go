// Command argocd-health runs an Argo CD health check (health.lua) on Kubernetes objects in
// gopher-lua, the Lua VM Argo CD uses, set up as Argo CD sets it up for a check from argocd-cm:
//
//	argocd-health SCRIPT [FILE]
//
// FILE (default: standard input) is `kubectl get -o json` output: one object or a List.
// Each object gives one JSON line: {"name": ..., "status": ..., "message": ...}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("usage: argocd-health SCRIPT [FILE]")
	}
	script, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	input := stdin
	if len(args) == 2 && args[1] != "-" {
		file, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer file.Close()
		input = file
	}
	objects, err := readObjects(input)
	if err != nil {
		return err
	}
	encoder := json.NewEncoder(stdout)
	for _, object := range objects {
		verdict, err := healthVerdict(string(script), object)
		if err != nil {
			return err
		}
		if err := encoder.Encode(verdict); err != nil {
			return err
		}
	}
	return nil
}

// readObjects decodes one object, or the items of a List.
func readObjects(input io.Reader) ([]map[string]any, error) {
	var object map[string]any
	if err := json.NewDecoder(input).Decode(&object); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	items, isList := object["items"].([]any)
	if !isList {
		return []map[string]any{object}, nil
	}
	objects := make([]map[string]any, 0, len(items))
	for _, item := range items {
		if itemObject, ok := item.(map[string]any); ok {
			objects = append(objects, itemObject)
		}
	}
	return objects, nil
}
