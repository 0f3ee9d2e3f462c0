// Command vulncheck reads govulncheck's JSON stream (-format json) on stdin
// and decides: a vulnerability the code calls in a module we require fails
// the check (upgrade the module); one in the standard library is reported,
// with the Go release that fixes it, but does not fail it, since the Go
// toolchain is the machine's (scripts/vulncheck.sh says why). Findings the
// code does not call are counted only.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

type frame struct {
	Module, Version, Package, Function string
}

type message struct {
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string  `json:"osv"`
		FixedVersion string  `json:"fixed_version"`
		Trace        []frame `json:"trace"`
	} `json:"finding"`
}

type called struct {
	id, module, version, fixed, where string
}

func main() {
	summaries := map[string]string{}
	found := map[string]called{}
	notCalled := map[string]bool{}
	dec := json.NewDecoder(os.Stdin)
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "vulncheck: reading govulncheck's output:", err)
			os.Exit(2)
		}
		if m.OSV != nil {
			summaries[m.OSV.ID] = m.OSV.Summary
		}
		f := m.Finding
		if f == nil || len(f.Trace) == 0 {
			continue
		}
		if f.Trace[0].Function == "" { // imported or required, not called
			notCalled[f.OSV] = true
			continue
		}
		if _, seen := found[f.OSV]; seen {
			continue
		}
		top := f.Trace[len(f.Trace)-1]
		found[f.OSV] = called{id: f.OSV, module: f.Trace[0].Module, version: f.Trace[0].Version, fixed: f.FixedVersion,
			where: top.Package + "." + top.Function}
	}
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range found {
			if !yield(id) {
				return
			}
		}
	})
	failed := 0
	for _, id := range ids {
		c := found[id]
		kind := "FAIL"
		if c.module == "stdlib" {
			kind = "Go"
		} else {
			failed++
		}
		fmt.Printf("%-4s %s %s@%s, fixed in %s: %s (a path from %s)\n", kind, id, c.module, c.version, c.fixed, strings.TrimSpace(summaries[id]), c.where)
	}
	for id := range found {
		delete(notCalled, id)
	}
	fmt.Printf("vulncheck: %d called in modules we require, %d called in the standard library, %d more not called\n",
		failed, len(found)-failed, len(notCalled))
	if len(found) > failed {
		fmt.Println("vulncheck: the standard library's are fixed by a newer Go release than this machine's (go version); build releases with it")
	}
	if failed > 0 {
		os.Exit(1)
	}
}
