package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/cdrs"
)

// cdrBatch is the body of a batch POST /api/cdrs.
type cdrBatch struct {
	CDRs []json.RawMessage `json:"cdrs"`
}

// cdrBatchReply answers a batch: one result per CDR posted, in order.
type cdrBatchReply struct {
	Results  []cdrs.BatchResult `json:"results"`
	Created  int                `json:"created"`
	Existing int                `json:"existing"`
}

// cdrRoutes are tenant routes: each runs inside inTenant (tenantAPI), with its tenant entered.
func (s *Server) cdrRoutes(api tenantAPI) {
	api.POST("/cdrs", postCDRs)
	api.GET("/cdrs", listCDRs)
	api.POST("/cdrs/rerate", rerateCDRs)
	api.GET("/cdrs/:id", getCDR)
}

func cdrStore(in tenantScope) *cdrs.Store {
	return &cdrs.Store{DB: in.DB, Tenant: in.Tenant}
}

// postCDRs ingests one CDR (201 when stored, 200 with the stored one when
// its uuid was already there) or a batch {"cdrs": [...]} (201 when any was
// stored, else 200).
func postCDRs(c *gin.Context, in tenantScope) error {
	one, batch, err := decodeCDRs(c)
	if err != nil {
		return err
	}
	if one != nil {
		res, err := cdrStore(in).Ingest(c.Request.Context(), *one)
		if err != nil {
			return err
		}
		status := http.StatusOK
		if res.Created {
			status = http.StatusCreated
			c.Header("Location", "/api/cdrs/"+itoa(res.CDR.ID))
		}
		return reply(c, status, res.CDR, nil)
	}
	results, err := cdrStore(in).IngestBatch(c.Request.Context(), batch)
	return replyBatch(c, results, err)
}

func replyBatch(c *gin.Context, results []cdrs.BatchResult, err error) error {
	body := cdrBatchReply{Results: results}
	for _, r := range results {
		if r.Created {
			body.Created++
		} else {
			body.Existing++
		}
	}
	status := http.StatusOK
	if body.Created > 0 {
		status = http.StatusCreated
	}
	return reply(c, status, body, err)
}

func listCDRs(c *gin.Context, in tenantScope) error {
	q, err := cdrQuery(c)
	if err != nil {
		return err
	}
	page, err := cdrStore(in).List(c.Request.Context(), q)
	return reply(c, http.StatusOK, page, err)
}

// getCDR reads one CDR by id or by call UUID.
func getCDR(c *gin.Context, in tenantScope) error {
	r, err := cdrStore(in).Get(c.Request.Context(), c.Param("id"))
	return reply(c, http.StatusOK, r, err)
}

func rerateCDRs(c *gin.Context, in tenantScope) error {
	r, err := cdrStore(in).Rerate(c.Request.Context(), c.Query("from"), c.Query("to"))
	return reply(c, http.StatusOK, r, err)
}

// cdrQuery reads the list parameters; List validates the text ones.
func cdrQuery(c *gin.Context) (cdrs.Query, error) {
	limit, _, err := pageParams(c)
	fields := controlplane.FieldErrors{}
	addFields(fields, err)
	if _, given := c.GetQuery("offset"); given {
		fields.Add("offset", "is not supported: pages follow next_cursor, which stays correct while CDRs arrive")
	}
	q := cdrs.Query{
		From: c.Query("from"), To: c.Query("to"), Direction: c.Query("direction"), Disposition: c.Query("disposition"),
		Src: c.Query("src"), Dst: c.Query("dst"), Cursor: c.Query("cursor"), Limit: limit,
		ExtensionID: int64(queryInt(c, "extension_id", fields)), QueueID: int64(queryInt(c, "queue_id", fields)),
	}
	for name, id := range map[string]int64{"extension_id": q.ExtensionID, "queue_id": q.QueueID} {
		if _, given := c.GetQuery(name); given && id < 1 {
			fields.Add(name, "must be a positive id")
		}
	}
	return q, fields.Err()
}

// decodeCDRs reads the body of POST /api/cdrs: one CDR object, or
// {"cdrs": [...]}. A batch in the usual shape is read in one pass
// (decodeBatchFast); any other body is decoded with encoding/json, each CDR
// of a batch on its own, so that a wrongly typed or unknown field is named
// by its place: cdrs[3].billsec.
func decodeCDRs(c *gin.Context) (*cdrs.Spec, []cdrs.Spec, error) {
	body, err := readBody(c)
	if err != nil {
		return nil, nil, err
	}
	if specs, ok := decodeBatchFast(body); ok {
		return nil, specs, cdrs.CheckBatchSize(len(specs))
	}
	return decodeCDRsStrict(body)
}

// decodeCDRsStrict is decodeCDRs with encoding/json, for any body. The
// text check (checkText) comes last, as in decodeJSON: a body that is not
// a CDR or a batch is told so first.
func decodeCDRsStrict(body string) (*cdrs.Spec, []cdrs.Spec, error) {
	var raw json.RawMessage
	if err := decodeOne([]byte(body), &raw); err != nil {
		return nil, nil, err
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, nil, controlplane.Errorf(controlplane.BadRequest, `the body must be a JSON object: one CDR, or {"cdrs": [...]}`)
	}
	if _, batch := probe["cdrs"]; !batch {
		var spec cdrs.Spec
		if err := decodeStrict(raw, &spec); err != nil {
			return nil, nil, err
		}
		if err := checkTextString(body); err != nil {
			return nil, nil, err
		}
		return &spec, nil, nil
	}
	var b cdrBatch
	if err := decodeStrict(raw, &b); err != nil {
		return nil, nil, err
	}
	if err := cdrs.CheckBatchSize(len(b.CDRs)); err != nil {
		return nil, nil, err
	}
	specs := make([]cdrs.Spec, len(b.CDRs))
	fields := controlplane.FieldErrors{}
	for i, item := range b.CDRs {
		err := decodeStrict(item, &specs[i])
		if err == nil {
			continue
		}
		var de *controlplane.Error
		if errors.As(err, &de) && len(de.Fields) > 0 {
			for k, v := range de.Fields {
				fields.Add(fmt.Sprintf("cdrs[%d].%s", i, k), v)
			}
		} else {
			fields.Add(fmt.Sprintf("cdrs[%d]", i), "must be a CDR object")
		}
	}
	if err := fields.Err(); err != nil {
		return nil, specs, err
	}
	if err := checkTextString(body); err != nil {
		return nil, nil, err
	}
	return nil, specs, nil
}

// decodeStrict decodes one complete JSON value as decodeJSON does the body:
// unknown fields and wrong types are 422 naming the field.
func decodeStrict(raw []byte, dst any) error {
	if !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		return controlplane.Errorf(controlplane.BadRequest, `the body must be a JSON object: one CDR, or {"cdrs": [...]}`)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	return nil
}

// addFields copies the fields of an Invalid error into fields.
func addFields(fields controlplane.FieldErrors, err error) {
	var de *controlplane.Error
	if errors.As(err, &de) {
		for k, v := range de.Fields {
			fields.Add(k, v)
		}
	}
}
