package main

import (
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// The chart's health check and its cases, laid out like Argo CD's resource_customizations:
// health.lua next to health_test.yaml, whose tests name an input manifest and the expected
// health status and message.
const checkDir = "../../charts/duckherd/argocd"

type healthTests struct {
	Tests []struct {
		InputPath    string `json:"inputPath"`
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
	} `json:"tests"`
}

func TestHealthLua(t *testing.T) {
	script, err := os.ReadFile(filepath.Join(checkDir, "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(checkDir, "health_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cases healthTests
	if err := yaml.UnmarshalStrict(raw, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases.Tests) == 0 {
		t.Fatal("health_test.yaml has no tests")
	}
	for _, test := range cases.Tests {
		t.Run(test.InputPath, func(t *testing.T) {
			manifest, err := os.ReadFile(filepath.Join(checkDir, test.InputPath))
			if err != nil {
				t.Fatal(err)
			}
			var object map[string]any
			if err := yaml.Unmarshal(manifest, &object); err != nil {
				t.Fatal(err)
			}
			got, err := healthVerdict(string(script), object)
			if err != nil {
				t.Fatal(err)
			}
			want := test.HealthStatus
			if got.Status != want.Status || got.Message != want.Message {
				t.Errorf("got %s %q, want %s %q", got.Status, got.Message, want.Status, want.Message)
			}
		})
	}
}
