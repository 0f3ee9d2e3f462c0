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
//
// Evidence mode (BASELINE_ROUTES="host=name,..." and BASELINE_ISOLATION):
// the same server picks the tenant by the request's Host in a map, the
// least a multi-tenant server can do, and reads from that tenant's schema
// ("schema": POOL_CONNS connections in lanes of 4, a tenant always on the
// same lane by a hash of its schema, as the product's router does, each
// tenant its own gorm handle) or database ("database": DATABASE_URL with the database
// replaced, a pool of POOL_CONNS per tenant, as the route's role when it
// reads "host=name:password"). It measures what spreading
// the reads over many schemas or databases costs PostgreSQL and the
// driver, without anything of the control plane.
// GET /debug/mallocs reports the heap allocations so far, for the
// allocations-per-request comparison (the control plane's /metrics has
// go_memstats_mallocs_total).
package main

import (
	"errors"
	"hash/fnv"
	"log"
	"net/http"
	_ "net/http/pprof" // on PPROF_ADDR only, never on the measured listener
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
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
	dsn := os.Getenv("DATABASE_URL")
	server, err := url.Parse(dsn)
	if err != nil {
		log.Fatal(err)
	}
	var single *gorm.DB // without routes: the one tenant
	byHost := map[string]*gorm.DB{}
	if routes := os.Getenv("BASELINE_ROUTES"); routes == "" {
		if single, err = open(dsn, os.Getenv("BASELINE_SCHEMA"), conns); err != nil {
			log.Fatal(err)
		}
	} else {
		var lanes []gorm.ConnPool
		for _, route := range strings.Split(routes, ",") {
			host, name, _ := strings.Cut(route, "=")
			name, password, hasPassword := strings.Cut(name, ":")
			var db *gorm.DB
			switch os.Getenv("BASELINE_ISOLATION") {
			case "schema":
				if lanes == nil {
					if lanes, err = openLanes(dsn, conns); err != nil {
						log.Fatal(err)
					}
				}
				h := fnv.New32a()
				_, _ = h.Write([]byte(name))
				db, err = gorm.Open(postgres.New(postgres.Config{Conn: lanes[h.Sum32()%uint32(len(lanes))]}), config(name))
			case "database":
				u := *server
				u.Path = "/" + name
				if hasPassword {
					u.User = url.UserPassword(name, password)
				}
				db, err = open(u.String(), "", conns)
			default:
				log.Fatal("BASELINE_ISOLATION must be schema or database")
			}
			if err != nil {
				log.Fatal(err)
			}
			byHost[host] = db
		}
	}
	tenantDB := func(c *gin.Context) *gorm.DB {
		if single != nil {
			return single
		}
		return byHost[c.Request.Host]
	}

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
		db := tenantDB(c)
		if db == nil {
			c.JSON(http.StatusNotFound, gin.H{"error": "unknown host"})
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

func config(schemaName string) *gorm.Config {
	prefix := ""
	if schemaName != "" {
		prefix = schemaName + "."
	}
	return &gorm.Config{
		NamingStrategy:         schema.NamingStrategy{TablePrefix: prefix},
		SkipDefaultTransaction: true,
		Logger:                 logger.Discard,
	}
}

// open is a gorm handle with its own pool of conns connections.
func open(dsn, schemaName string, conns int) (*gorm.DB, error) {
	db, err := gorm.Open(postgres.Open(dsn), config(schemaName))
	if err != nil {
		return nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(conns)
	sqlDB.SetMaxIdleConns(conns)
	return db, nil
}

// openLanes splits conns connections in pools of 4 (at least one pool).
func openLanes(dsn string, conns int) ([]gorm.ConnPool, error) {
	var lanes []gorm.ConnPool
	for range max(conns/4, 1) {
		db, err := open(dsn, "", min(4, conns))
		if err != nil {
			return nil, err
		}
		sqlDB, err := db.DB()
		if err != nil {
			return nil, err
		}
		lanes = append(lanes, sqlDB)
	}
	return lanes, nil
}
