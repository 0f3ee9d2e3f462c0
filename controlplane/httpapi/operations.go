package httpapi

import (
	"io"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/controlplane"
)

// operationList and backupList are the bodies of the list routes.
type operationList struct {
	Data []controlplane.Operation `json:"data"`
}

type backupList struct {
	Data []controlplane.Backup `json:"data"`
}

func (s *Server) operationRoutes(api *gin.RouterGroup) {
	api.POST("/tenants/:id/backups", handle(s.startBackup))
	api.POST("/tenants/:id/restore", handle(s.startRestore))
	api.POST("/tenants/:id/move", handle(s.startMove))
	api.GET("/tenants/:id/backups", handle(s.listBackups))
	api.GET("/backups/:id", handle(s.getBackup))
	api.GET("/backups/:id/download", handle(s.downloadBackup))
	api.DELETE("/backups/:id", handle(s.deleteBackup))
	api.GET("/operations", handle(s.listOperations))
	api.GET("/operations/:id", handle(s.getOperation))
	api.POST("/operations/:id/cancel", handle(s.cancelOperation))
}

// startBackup answers 202 with the operation; it runs in the background
// (poll Location).
func (s *Server) startBackup(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	op, err := s.Operations.StartBackup(c.Request.Context(), id)
	if err != nil {
		return err
	}
	c.Header("Location", "/api/operations/"+itoa(op.ID))
	c.JSON(http.StatusAccepted, op)
	return nil
}

// restoreRequest is the body of POST /api/tenants/{id}/restore.
type restoreRequest struct {
	BackupID int64 `json:"backup_id"`
}

// startRestore answers 202 with the operation (poll Location).
func (s *Server) startRestore(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var req restoreRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.BackupID < 1 {
		return controlplane.FieldError("backup_id", "is required: a backup id of this tenant (GET /api/tenants/{id}/backups)")
	}
	op, err := s.Operations.StartRestore(c.Request.Context(), id, req.BackupID)
	if err != nil {
		return err
	}
	c.Header("Location", "/api/operations/"+itoa(op.ID))
	c.JSON(http.StatusAccepted, op)
	return nil
}

// startMove answers 202 with the move's operation (poll Location).
func (s *Server) startMove(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var req controlplane.MoveSpec
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	op, err := s.Operations.StartMove(c.Request.Context(), id, req)
	if err != nil {
		return err
	}
	c.Header("Location", "/api/operations/"+itoa(op.ID))
	c.JSON(http.StatusAccepted, op)
	return nil
}

func (s *Server) listBackups(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	list, err := s.Operations.Store.Backups(c.Request.Context(), id)
	return reply(c, http.StatusOK, backupList{Data: list}, err)
}

func (s *Server) getBackup(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	b, err := s.Operations.Store.Backup(c.Request.Context(), id)
	return reply(c, http.StatusOK, b, err)
}

// downloadBackup streams a ready backup's archive, with its SHA-256 for
// the client to check.
func (s *Server) downloadBackup(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	b, f, err := s.Operations.BackupFile(c.Request.Context(), id)
	if err != nil {
		return err
	}
	defer f.Close()
	c.Header("Content-Type", "application/octet-stream")
	c.Header("Content-Disposition", `attachment; filename="`+b.TenantSlug+"-backup-"+itoa(b.ID)+`.dump"`)
	c.Header("X-Content-SHA256", b.SHA256)
	if b.SizeBytes != nil {
		c.Header("Content-Length", strconv.FormatInt(*b.SizeBytes, 10))
	}
	c.Status(http.StatusOK)
	_, _ = io.Copy(c.Writer, f) // a client gone mid-way is its own loss
	return nil
}

func (s *Server) deleteBackup(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	return noContent(c, s.Operations.DeleteBackup(c.Request.Context(), id))
}

// listOperations filters by tenant, kind and state, newest first, up to
// limit (default 50, at most 500).
func (s *Server) listOperations(c *gin.Context) error {
	fields := controlplane.FieldErrors{}
	f := controlplane.OperationFilter{Limit: 50}
	id, _, err := tenantQuery(c)
	if err != nil {
		fields.Add("tenant", "must be a tenant id")
	}
	f.TenantID = id
	if v, ok := c.GetQuery("kind"); ok {
		switch controlplane.OperationKind(v) {
		case controlplane.OperationBackup, controlplane.OperationRestore, controlplane.OperationMove:
		default:
			fields.Add("kind", "must be one of: backup, restore, move")
		}
		f.Kind = controlplane.OperationKind(v)
	}
	if v, ok := c.GetQuery("state"); ok {
		switch controlplane.OperationState(v) {
		case controlplane.OperationRunning, controlplane.OperationSucceeded, controlplane.OperationFailed, controlplane.OperationCancelled:
		default:
			fields.Add("state", "must be one of: running, succeeded, failed, cancelled")
		}
		f.State = controlplane.OperationState(v)
	}
	if _, ok := c.GetQuery("limit"); ok {
		if f.Limit = queryInt(c, "limit", fields); f.Limit < 1 || f.Limit > 500 {
			fields.Add("limit", "must be from 1 to 500")
		}
	}
	if err := fields.Err(); err != nil {
		return err
	}
	list, err := s.Operations.Store.Operations(c.Request.Context(), f)
	return reply(c, http.StatusOK, operationList{Data: list}, err)
}

func (s *Server) getOperation(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	op, err := s.Operations.Store.Operation(c.Request.Context(), id)
	return reply(c, http.StatusOK, op, err)
}

func (s *Server) cancelOperation(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	op, err := s.Operations.Cancel(c.Request.Context(), id)
	return reply(c, http.StatusOK, op, err)
}
