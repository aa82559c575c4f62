// bench_queue: Haraka's queue for `make bench` (perf/bench.py).  Every
// recipient is accepted (the benchmark's domains only, no relay checks), and
// each message is written to a file of its own in $BENCH_QUEUE_DIR and
// fsync'ed before the queue hook answers OK, i.e. before Haraka's 250: the
// same promise as Postfix's queue and pigeond's spool.  The reverse-DNS
// lookup of each client is answered here (the clients are 127.0.0.x), so the
// benchmark measures Haraka and not the machine's resolver.
'use strict'
const fs = require('fs')
const path = require('path')

let dir = null
let seq = 0

exports.register = function () {
    dir = process.env.BENCH_QUEUE_DIR
    if (!dir) throw new Error('bench_queue: BENCH_QUEUE_DIR is not set')
    this.register_hook('lookup_rdns', 'no_rdns')
    this.register_hook('rcpt', 'accept_rcpt')
    this.register_hook('queue', 'write_synced')
}

exports.no_rdns = function (next) {
    next(OK, 'loadgen.bench.test')
}

exports.accept_rcpt = function (next) {
    next(OK)
}

exports.write_synced = function (next, connection) {
    const txn = connection.transaction
    const file = path.join(dir, `${process.pid}-${++seq}.eml`)
    let done = false
    const finish = (code, msg) => {
        if (done) return
        done = true
        next(code, msg)
    }
    const ws = fs.createWriteStream(file, { autoClose: false })
    ws.on('error', (err) => {
        connection.logerror(this, `write ${file}: ${err.message}`)
        finish(DENYSOFT, 'queue write failed')
    })
    ws.on('finish', () => {
        fs.fsync(ws.fd, (err) => {
            fs.close(ws.fd, () => {
                if (err) finish(DENYSOFT, 'queue fsync failed')
                else finish(OK, 'queued (synced)')
            })
        })
    })
    txn.message_stream.pipe(ws, { line_endings: '\r\n' })
}
