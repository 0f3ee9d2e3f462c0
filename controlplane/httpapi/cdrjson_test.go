package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/cdrs"
)

// batchBody is a batch of n CDRs as a switch posts it.
func batchBody(n int) string {
	var b strings.Builder
	b.WriteString(`{"cdrs": [`)
	for i := range n {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"uuid":"6f9619ff-8b86-4011-b42d-%012d","direction":"outbound","src":"1001","dst":"+442071838750",`+
			`"start_at":"2025-11-02T05:30:00Z","answer_at":"2025-11-02T05:30:03Z","end_at":"2025-11-02T05:30:50Z",`+
			`"duration":50,"billsec":47,"disposition":"ANSWERED"}`, i)
	}
	b.WriteString("]}")
	return b.String()
}

// postCDRBody runs decodeCDRs on body as POST /api/cdrs does.
func postCDRBody(body string) (*cdrs.Spec, []cdrs.Spec, error) {
	w := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(w)
	c.Request = httptest.NewRequest(http.MethodPost, "/api/cdrs", strings.NewReader(body))
	c.Request.Body = http.MaxBytesReader(w, c.Request.Body, MaxBodyBytes)
	return decodeCDRs(c)
}

func TestDecodeBatchFast(t *testing.T) {
	// What the fast path reads, it reads as encoding/json does.
	for _, body := range []string{
		batchBody(1), batchBody(3),
		` { "cdrs" : [ { } , {"uuid":"a","uuid":"b"} ] } ` + "\n",
		"{\"cdrs\":[{\"answer_at\":null,\"duration\":null,\"extension_id\":null,\"queue_id\":7,\"billsec\":-0,\"src\":\"\",\"dst\":\"\x7f\"}]}",
		`{"cdrs":[{"answer_at":"x","answer_at":null,"duration":123456789012345678,"extension_id":-5}]}`,
		`{"cdrs":[{"uuid":"a\"b\u00e9"}]}`, "{\"cdrs\":[{\"uuid\":\"é\"}]}", `{"cdrs":[{"UUID":"a"}]}`,
	} {
		fast, ok := decodeBatchFast(body)
		require.True(t, ok, body)
		_, strict, err := decodeCDRsStrict(body)
		require.NoError(t, err, body)
		require.Equal(t, strict, fast, body)
	}
	// Anything that is not a well-formed batch of CDR objects is left to
	// encoding/json, which names what is wrong.
	for _, body := range []string{
		``, `{}`, `{"CDRS":[{}]}`, ` {"x":1}`, `{"cdrs":null}`, `{"cdrs":{}}`, `[{"uuid":"a"}]`, `{"cdrs":[1]}`, `{"cdrs":[null]}`, `{"cdrs":[{}, null]}`,
		`{"cdrs":[{}],"x":1}`, `{"x":1,"cdrs":[{}]}`, `{"cdrs":[{"colour":"blue"}]}`,
		`{"cdrs":[{}]}{}`, `{"cdrs":[{}]} x`, `{"cdrs":[{},]}`, `{"cdrs":[{"uuid":"a",}]}`, "{\"cdrs\":[{\"uuid\":\"a\tb\"}]}",
		`{"cdrs":[{"billsec":1.5}]}`, `{"cdrs":[{"billsec":1e2}]}`,
		`{"cdrs":[{"billsec":01}]}`, `{"cdrs":[{"billsec":-}]}`, `{"cdrs":[{"billsec":+1}]}`, `{"cdrs":[{"billsec":"1"}]}`,
		`{"cdrs":[{"billsec":12345678901234567890}]}`, `{"cdrs":[{"duration":"50"}]}`, `{"cdrs":[{"uuid":1}]}`, `{"cdrs":[{"answer_at":nul}]}`,
		`{"cdrs":[{"queue_id":nullx}]}`, `{"cdrs":[{"uuid":"a"`, `{"cdrs":[{"uuid":"a"}`, `{"cdrs":[{"uuid":"a"}]`,
		// Text PostgreSQL cannot store, or that decoding would alter.
		`{"cdrs":[{"src":"\u0000"}]}`, "{\"cdrs\":[{\"src\":\"\xff\"}]}", `{"cdrs":[{"src":"\ud800"}]}`,
	} {
		_, ok := decodeBatchFast(body)
		require.False(t, ok, body)
	}
}

// The answers of POST /api/cdrs to bad batches are what they were before
// the fast path: 4xx naming the field by its place.
func TestDecodeCDRsErrors(t *testing.T) {
	for body, want := range map[string][]string{
		`{"cdrs":[{"duration":"50"},{"colour":"blue"},7,null]}`: {"cdrs[0].duration", "cdrs[1].colour", "cdrs[2]", "cdrs[3]"},
		`{"cdrs":[]}`:             {"cdrs"},
		`{"cdrs":null}`:           {"cdrs"},
		`{"cdrs":[{}],"uuid":""}`: {"uuid"},
		// Text is checked after the shape, on the raw body (checkText).
		`{"cdrs":[{"src":"1001"},{"dst":"\u0000","disposition":"\udc00"}]}`: {"cdrs[1].dst", "cdrs[1].disposition"},
		"{\"cdrs\":[{\"src\":\"\xff\"}]}":                                   {"cdrs[0].src"},
		`{"uuid":"a","src":"\ud800x"}`:                                      {"src"},
		`{"cdrs":[{"src":"\u0000","billsec":"x"}]}`:                         {"cdrs[0].billsec"},
	} {
		_, _, err := postCDRBody(body)
		var de *controlplane.Error
		require.ErrorAs(t, err, &de, body)
		var got []string
		for k := range de.Fields {
			got = append(got, k)
		}
		require.ElementsMatch(t, want, got, body)
	}
	_, _, err := postCDRBody(batchBody(cdrs.MaxBatch + 1))
	require.Equal(t, controlplane.Invalid, controlplane.ErrorCode(err))
	_, _, err = postCDRBody(`{"cdrs":[{}]} {}`)
	require.Equal(t, controlplane.BadRequest, controlplane.ErrorCode(err))
	_, _, err = postCDRBody(`{"cdrs":[` + strings.Repeat(" ", MaxBodyBytes) + `]}`)
	require.Equal(t, controlplane.TooLarge, controlplane.ErrorCode(err))

	one, batch, err := postCDRBody(`{"uuid":"6f9619ff-8b86-4011-b42d-00c04fc964ff"}`)
	require.NoError(t, err)
	require.Nil(t, batch)
	require.Equal(t, "6f9619ff-8b86-4011-b42d-00c04fc964ff", one.UUID)
	_, batch, err = postCDRBody(batchBody(cdrs.MaxBatch))
	require.NoError(t, err)
	require.Len(t, batch, cdrs.MaxBatch)
}

// FuzzDecodeBatchFast: whenever the fast path accepts a body, encoding/json
// accepts it too and makes the very same specs of it.
func FuzzDecodeBatchFast(f *testing.F) {
	for _, s := range []string{
		batchBody(2), `{"cdrs":[{}]}`, `{"cdrs":[{"answer_at":null,"duration":null,"extension_id":3,"queue_id":null}]}`,
		`{"cdrs":[{"billsec":-0,"duration":0}]}`, `{"cdrs":[{"uuid":"a","uuid":"b"}]}`, ` {"cdrs" : [ {"src" : "\u007f"} ] } `,
		`{"cdrs":[{"src":"\u0000"}]}`, "{\"cdrs\":[{},{\"dst\":\"1\xff\"}]}", `{"cdrs":[{"uuid":"\udbff"}]}`, `{"cdrs":[{"uuid":"\ud83d\ude00\u00e9"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := decodeBatchFast(string(body))
		if !ok || len(fast) > cdrs.MaxBatch {
			return
		}
		_, strict, err := decodeCDRsStrict(string(body))
		require.NoError(t, err, "%q", body)
		require.Equal(t, strict, fast, "%q", body)
		requireCleanText(t, body, fast)
	})
}

func BenchmarkDecodeCDRs(b *testing.B) {
	body := []byte(batchBody(cdrs.MaxBatch))
	for _, fast := range []bool{true, false} {
		b.Run(fmt.Sprintf("fast=%v", fast), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if !fast {
					if _, _, err := decodeCDRsStrict(string(body)); err != nil {
						b.Fatal(err)
					}
					continue
				}
				w := httptest.NewRecorder()
				c, _ := gin.CreateTestContext(w)
				c.Request = httptest.NewRequest(http.MethodPost, "/api/cdrs", bytes.NewReader(body))
				if _, _, err := decodeCDRs(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBatchReply is the encoding of a batch's answer.
func BenchmarkBatchReply(b *testing.B) {
	results := make([]cdrs.BatchResult, cdrs.MaxBatch)
	for i := range results {
		id, reason := int64(i+1), "no_rate"
		results[i] = cdrs.BatchResult{ID: id, UUID: fmt.Sprintf("6f9619ff-8b86-4011-b42d-%012d", i), Created: true}
		if i%2 == 0 {
			results[i].UnratedReason = &reason
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(cdrBatchReply{Results: results}); err != nil {
			b.Fatal(err)
		}
	}
}
