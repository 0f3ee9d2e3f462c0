// Command baseline is the yardstick of benchmark 1 (routed reads): the
// smallest single-tenant gin + gorm server that answers
// GET /api/extensions/:id from one schema, with the same query shape and
// the same JSON as the control plane, and nothing else: no tenant
// resolution, no middleware, no routing to a pool. What the control plane
// costs on top of it is what benchmark 1 measures.
//
// It is configured like a typical single-tenant app: gorm's default
// PostgreSQL driver (pgx, statements prepared and cached per connection),
// a pool of POOL_CONNS connections, table names qualified with the schema
// so that PostgreSQL runs the very statement the control plane runs:
//
//	SELECT * FROM "tenant_1"."extensions" WHERE "extensions"."id" = $1 ORDER BY "extensions"."id" LIMIT $2
//
// Environment: DATABASE_URL, BASELINE_SCHEMA, LISTEN_ADDR, POOL_CONNS, and
// PPROF_ADDR to serve net/http/pprof there (the harness's -profile).
// GET /debug/mallocs reports the heap allocations so far, for the
// allocations-per-request comparison (the control plane's /metrics has
// go_memstats_mallocs_total).
package main

import (
	"errors"
	"log"
	"net/http"
	_ "net/http/pprof" // on PPROF_ADDR only, never on the measured listener
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"
)

// extension is the row, as tenantdb/extensions reads it.
type extension struct {
	ID               int64
	Number           string
	Name             string
	Enabled          bool
	OutboundCallerID *string
	HA1MD5           *string `gorm:"column:ha1_md5"`
	HA1SHA256        *string `gorm:"column:ha1_sha256"`
	HA1Realm         *string `gorm:"column:ha1_realm"`
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

func (extension) TableName(n schema.Namer) string { return n.TableName("Extension") }

// reply is the control plane's extension JSON.
type reply struct {
	ID               int64     `json:"id"`
	Number           string    `json:"number"`
	Name             string    `json:"name"`
	Enabled          bool      `json:"enabled"`
	OutboundCallerID *string   `json:"outbound_caller_id"`
	PasswordSet      bool      `json:"password_set"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

func main() {
	conns, err := strconv.Atoi(os.Getenv("POOL_CONNS"))
	if err != nil || conns < 1 {
		conns = 20
	}
	db, err := gorm.Open(postgres.Open(os.Getenv("DATABASE_URL")), &gorm.Config{
		NamingStrategy:         schema.NamingStrategy{TablePrefix: os.Getenv("BASELINE_SCHEMA") + "."},
		SkipDefaultTransaction: true,
		Logger:                 logger.Discard,
	})
	if err != nil {
		log.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		log.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(conns)
	sqlDB.SetMaxIdleConns(conns)

	if addr := os.Getenv("PPROF_ADDR"); addr != "" {
		go func() { log.Println(http.ListenAndServe(addr, nil)) }()
	}

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/debug/mallocs", func(c *gin.Context) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		c.JSON(http.StatusOK, gin.H{"mallocs": m.Mallocs})
	})
	r.GET("/api/extensions/:id", func(c *gin.Context) {
		id, err := strconv.ParseInt(c.Param("id"), 10, 64)
		if err != nil || id < 1 {
			c.JSON(http.StatusBadRequest, gin.H{"error": "bad id"})
			return
		}
		var row extension
		if err := db.WithContext(c.Request.Context()).First(&row, id).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				c.JSON(http.StatusNotFound, gin.H{"error": "not found"})
				return
			}
			c.JSON(http.StatusInternalServerError, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, reply{
			ID: row.ID, Number: row.Number, Name: row.Name, Enabled: row.Enabled,
			OutboundCallerID: row.OutboundCallerID, PasswordSet: row.HA1Realm != nil,
			CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt,
		})
	})
	srv := &http.Server{Addr: os.Getenv("LISTEN_ADDR"), Handler: r, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Fatal(srv.ListenAndServe())
}
