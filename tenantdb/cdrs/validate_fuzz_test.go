package cdrs

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzValidateCDR: any CDR a switch (or an attacker) posts is either
// refused with named fields or consistent: start ≤ answer ≤ end and
// 0 ≤ billsec ≤ duration, billsec 0 when unanswered. Never a panic.
func FuzzValidateCDR(f *testing.F) {
	for _, s := range []string{
		`{"uuid":"6f9619ff-8b86-4011-b42d-00c04fc964ff","direction":"outbound","src":"1001","dst":"+442071838750","start_at":"2025-11-02T05:30:00Z","answer_at":"2025-11-02T05:30:03Z","end_at":"2025-11-02T05:30:50Z","duration":50,"billsec":47,"disposition":"ANSWERED"}`,
		`{"uuid":"x","direction":"sideways","start_at":"yesterday"}`,
		`{"uuid":"6F9619FF8B864011B42D00C04FC964FF","direction":"inbound","src":"","dst":"1002","start_at":"2025-03-09T06:59:59Z","end_at":"2025-03-09T07:00:01Z","duration":2,"billsec":0,"disposition":"NO ANSWER"}`,
		`{"start_at":"2025-01-01T00:00:00Z","answer_at":"2024-01-01T00:00:00Z","end_at":"2023-01-01T00:00:00Z","duration":-5,"billsec":9999999999}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var spec Spec
		if json.Unmarshal(body, &spec) != nil {
			return
		}
		in, errs := spec.validate()
		if len(errs) > 0 {
			for field, reason := range errs {
				require.NotEmpty(t, field)
				require.NotEmpty(t, reason)
			}
			return
		}
		require.False(t, in.EndAt.Before(in.StartAt))
		if in.AnswerAt != nil {
			require.False(t, in.AnswerAt.Before(in.StartAt))
			require.False(t, in.EndAt.Before(*in.AnswerAt))
		} else {
			require.Zero(t, in.Billsec)
		}
		require.GreaterOrEqual(t, in.Billsec, 0)
		require.LessOrEqual(t, in.Billsec, in.Duration)
	})
}
