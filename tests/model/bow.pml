/*
 * A Promela model of dm-bow's crash-safety protocol, checked with spin
 * (tests/model/run.sh). What it covers, what it abstracts away and how its
 * steps map to the code: docs/reliability.md, "The protocol, model-checked".
 *
 * The device: block 0 holds the log (always written with PREFLUSH|FUA);
 * blocks 1 and 2 held data at checkpoint (11 and 12); blocks 3 to NB-1 were
 * free (trimmed, 0) at checkpoint. Two writers each overwrite two blocks
 * while the target is in state 1: a first overwrite is backed up into free
 * space and logged before the user's write goes down; a write into free
 * space claims it with a zero entry first; a write onto a block holding a
 * backup (or a saved log block) moves that first. The log group-commits and
 * chains full log blocks into free space. A power cut may come at any step;
 * the disk then keeps any subset of the writes not yet flushed. After it,
 * the restore runs, may itself be cut, and runs again. Or, once the writers
 * are done, the target commits, and a cut during the commit must leave
 * either the checkpoint (the log is still there) or the committed view.
 *
 * Each inline and process names the function of the code it stands for
 * (on lines that start with "code:" after the comment's star, one line
 * each); tests/model/run.sh checks that those functions exist.
 *
 * Seeded bad variants, each of which spin must catch (run.sh requires it):
 * -DBAD_RELEASE_EARLY: the user's write goes down before its log entry is
 *   durable;
 * -DBAD_NO_RESERVE: the free space kept back for the log's chain blocks is
 *   one block short, so a log write can find no block to chain into.
 */

#define NB 8            /* blocks: 0 log, 1-2 data, 3-7 free at checkpoint */
#define FIRST_FREE 3
#define E 2             /* entries per log block (entry 0 of a chained block is its chain pointer) */
#define K 4             /* saved log blocks at most */
#define MAXE 10         /* entries in the whole chain at most */
#define LOGBLK 100      /* content of a block holding saved log block k: LOGBLK + k */
/* Free blocks a plan must leave: one per entry not durable (this one
   included) for the log to chain into, plus the one it takes. */
#ifdef BAD_NO_RESERVE
#define NEED(unlogged) ((unlogged) + 1)
#else
#define NEED(unlogged) ((unlogged) + 2)
#endif

/* Kinds of the range map (bow-core rangemap::Kind). */
#define UNCHANGED 0
#define CHANGED 1
#define FREE 2
#define BUSY 3
#define BACKUP 4
#define CLAIMED 5

typedef Ent {
    byte src;   /* 0 for a chain pointer */
    byte dst;   /* where the backup (or the saved log block) is; src for a zero entry */
    byte val;   /* checksum stand-in: the content copied */
    bool zero;  /* a zero entry: src was free space, claimed */
};
typedef LogBlk {
    byte n;
    Ent e[E];
};

/* The disk: what is durable, and what is written but not flushed. */
byte dur[NB];
byte vol[NB];
bool has_vol[NB];
/* Block 0: written only with PREFLUSH|FUA, so never volatile. */
byte magic0;            /* 0: no log, 1: BOW, 2: WOB (a restore is under way) */
LogBlk d0;
LogBlk saved[K];        /* the content of saved log block k, as written (ghost) */
/* A WOB log: the entries a restore still has to replay, newest first (ghost
   for the real WOB block, which keeps the chain below it). */
Ent wob[MAXE];
byte nwob;

/* The target, in memory. */
byte kind[NB];
LogBlk cur;             /* the log block as the target keeps it */
byte nsaved;
Ent pending[MAXE];      /* entries queued for the log (group commit) */
byte npending;
byte enqueued;          /* entries ever queued */
byte durable;           /* entries made durable */
bool writing;           /* a writer is writing the log */
byte unlogged;          /* entries planned and not durable: the log may need a chain block for each */
byte last[NB];          /* the last value written to each block (committed view) */

bool crashed;
byte writers_done;
bool committed_done;

#define COPY_ENT(to, from) to.src = from.src; to.dst = from.dst; to.val = from.val; to.zero = from.zero
#define COPY_BLK(to, from) to.n = from.n; COPY_ENT(to.e[0], from.e[0]); COPY_ENT(to.e[1], from.e[1])
#define USER_DATA(v) ((v) >= 21 && (v) < LOGBLK)

inline visible(b, v) { if :: has_vol[b] -> v = vol[b] :: else -> v = dur[b] fi }
inline write_plain(b, v) { vol[b] = v; has_vol[b] = true }
inline flush(i) {
    i = 0;
    do
    :: i < NB -> if :: has_vol[i] -> dur[i] = vol[i]; has_vol[i] = false :: else fi; i++
    :: else -> break
    od
}
/* A power cut: each unflushed write survives or not. */
inline power_cut(i) {
    i = 0;
    do
    :: i < NB ->
        if
        :: has_vol[i] -> if :: dur[i] = vol[i] :: skip fi; has_vol[i] = false
        :: else
        fi;
        i++
    :: else -> break
    od
}

/* Free blocks. */
inline count_free(n, j) {
    n = 0; j = FIRST_FREE;
    do :: j < NB -> if :: kind[j] == FREE -> n++ :: else fi; j++ :: else -> break od
}

/* A free block for a backup or a saved log block. code: rangemap::find_free */
inline take_free(f) {
    f = FIRST_FREE;
    do
    :: f < NB && kind[f] == FREE -> break
    :: f < NB && kind[f] != FREE -> f++
    :: f == NB -> break
    od
}

/*
 * The log writer: appends the batch it took to the log block, saving a full
 * block into free space and chaining to it (a plain write), then writes
 * block 0 with PREFLUSH|FUA, which makes every completed write durable
 * first. code: Shared::await_log, Shared::write_log
 */
inline write_log() {
    i = 0;
    do
    :: i < nbatch ->
        if
        :: cur.n == E ->
            atomic { !crashed -> take_free(c); assert(c < NB); kind[c] = BACKUP;
                     COPY_BLK(saved[nsaved], cur);
                     write_plain(c, LOGBLK + nsaved);
                     cur.n = 1; cur.e[0].src = 0; cur.e[0].dst = c;
                     cur.e[0].val = LOGBLK + nsaved; cur.e[0].zero = false; nsaved++ }
        :: else
        fi;
        COPY_ENT(cur.e[cur.n], batch[i]);
        cur.n++; i++
    :: else -> break
    od;
    atomic { !crashed -> flush(i); magic0 = 1; COPY_BLK(d0, cur); durable = upto; writing = false }
}

/*
 * One write of value v to block b in state 1.
 * code: Shared::route, Shared::plan, Shared::copy_jobs, Shared::commit_log, Shared::settle
 */
inline overwrite(b, v) {
    f = NB; copy = false; claim = false; logged = false;
    /* plan, under the map's lock: mark source and destination busy */
    atomic {
        !crashed && kind[b] != BUSY ->
        was = kind[b];
        /* what stays free must cover a chain block for every entry not
           durable, this one included (code: Shared::room_for_entry) */
        count_free(nf, i);
        if
        :: was == UNCHANGED || was == BACKUP ->
            if
            :: nf >= NEED(unlogged) -> take_free(f); kind[f] = BUSY; kind[b] = BUSY; copy = true; unlogged++
            :: else -> skip /* ENOSPC: the write fails, nothing changes */
            fi
        :: was == FREE ->
            if
            :: nf >= NEED(unlogged) -> kind[b] = BUSY; claim = true; unlogged++
            :: else -> skip
            fi
        :: else -> skip /* changed or claimed: no backup needed */
        fi
    }
    if
    :: copy ->
        atomic { !crashed -> visible(b, data) };
        atomic { !crashed -> write_plain(f, data) }   /* the copy: a plain write */
    :: else
    fi;
#ifdef BAD_RELEASE_EARLY
    if
    :: copy || claim -> atomic { !crashed -> write_plain(b, v); last[b] = v }
    :: else
    fi;
#endif
    if
    :: copy || claim ->
        /* queue the entry, then wait until a log write holding it is durable */
        atomic { !crashed ->
            pending[npending].src = b;
            if :: claim -> pending[npending].dst = b; pending[npending].val = 0
               :: else -> pending[npending].dst = f; pending[npending].val = data fi;
            pending[npending].zero = claim;
            npending++; enqueued++; mine = enqueued }
        do
        :: atomic { !crashed && durable >= mine -> logged = true }; break
        :: atomic { !crashed && durable < mine && !writing ->
               /* become the writer: take everything queued so far */
               writing = true; upto = enqueued; nbatch = npending; i = 0;
               do :: i < npending -> COPY_ENT(batch[i], pending[i]); i++ :: else -> break od;
               npending = 0 };
           write_log()
        od;
        /* settle: the block is changed (claimed), the copy a backup */
        atomic { !crashed ->
            unlogged--;
            if
            :: claim -> kind[b] = CLAIMED
            :: else -> kind[b] = CHANGED; kind[f] = BACKUP
            fi }
    :: else
    fi;
#ifndef BAD_RELEASE_EARLY
    /* only now does the user's write go down */
    if
    :: was == CHANGED || was == CLAIMED || logged -> atomic { !crashed -> write_plain(b, v); last[b] = v }
    :: else
    fi
#endif
}

proctype Writer(byte first; byte val) {
    byte b, f, was, data, mine, upto, nbatch, i, c, nf;
    bool copy, claim, logged;
    Ent batch[MAXE];
    /* Two writes: a data block, then a data block or free space (the
       first free block is taken for a backup by then, so a write there
       moves the backup; the last one is still free, so a write there
       claims it). */
    b = first;
    overwrite(b, val);
    if :: b = 1 :: b = 2 :: b = FIRST_FREE :: b = NB - 1 fi;
    overwrite(b, val + 1);
    atomic { !crashed -> writers_done++ }
}

/* 1 -> 2 once the writers are done: everything written is made durable,
 * then block 0 loses the log. code: Shared::commit */
proctype Commit() {
    byte i;
    atomic { !crashed && writers_done == 2 -> flush(i) };
    atomic { !crashed -> magic0 = 0; d0.n = 0; committed_done = true }
}

/*
 * The offline restore.
 * code: restore::validate_with, restore::plan, restore::restore
 *
 * It reads the chain newest entry first, validating every backup against
 * its checksum as if the newer entries had already been replayed (a chain
 * pointer is read that way too: its saved block may have been moved), then
 * replays newest first. After each entry it fences: sync, block 0 as a WOB
 * log of the entries still to do, sync. Then it clears every backup's and
 * saved log block's place, syncs and removes the log. A cut may come
 * between any two steps when `may_cut`.
 */
inline collect() {
    valid = true; ntodo = 0;
    i = 0;
    do :: i < NB -> visible(i, img[i]); i++ :: else -> break od;
    if
    :: magic0 == 2 ->
        /* a restore was cut: its WOB log says what is left */
        i = 0;
        do :: i < nwob -> COPY_ENT(todo[i], wob[i]); i++ :: else -> break od;
        ntodo = nwob;
        i = 0;
        do
        :: i < ntodo ->
            if
            :: todo[i].zero -> img[todo[i].src] = 0
            :: !todo[i].zero && img[todo[i].dst] == todo[i].val -> img[todo[i].src] = img[todo[i].dst]
            :: !todo[i].zero && img[todo[i].dst] != todo[i].val -> valid = false
            fi;
            i++
        :: else -> break
        od
    :: magic0 == 1 ->
        COPY_BLK(walk, d0); nclear = 0;
        do
        :: walk.n == 0 || !valid -> break
        :: walk.n > 0 && valid ->
            k = walk.n - 1;
            if
            :: walk.e[k].src == 0 && !walk.e[k].zero ->
                /* chain pointer: the saved block, read through the replay */
                clear[nclear] = walk.e[k].dst; nclear++;
                if
                :: img[walk.e[k].dst] == walk.e[k].val -> c = walk.e[k].val - LOGBLK; COPY_BLK(walk, saved[c])
                :: else -> valid = false
                fi
            :: else ->
                COPY_ENT(todo[ntodo], walk.e[k]); ntodo++; walk.n--;
                if
                :: walk.e[k].zero -> img[walk.e[k].src] = 0
                :: !walk.e[k].zero && img[walk.e[k].dst] == walk.e[k].val ->
                    img[walk.e[k].src] = img[walk.e[k].dst]; clear[nclear] = walk.e[k].dst; nclear++
                :: !walk.e[k].zero && img[walk.e[k].dst] != walk.e[k].val -> valid = false
                fi
            fi
        od
    :: else
    fi
}

inline restore(may_cut) {
    cut = false;
    if
    :: magic0 == 0 -> skip   /* nothing to restore */
    :: else ->
        collect();
        assert(valid);       /* a log the target wrote is never invalid */
        r = 0;
        do
        :: r < ntodo && !cut ->
            if
            :: todo[r].zero -> write_plain(todo[r].src, 0)
            :: else -> visible(todo[r].dst, x); write_plain(todo[r].src, x)
            fi;
            if :: may_cut -> cut = true :: true fi;
            if
            :: !cut ->
                /* fence: sync, block 0 as WOB holding the entries left, sync */
                flush(i); r++;
                nwob = 0;
                i = r;
                do :: i < ntodo -> COPY_ENT(wob[nwob], todo[i]); nwob++; i++ :: else -> break od;
                magic0 = 2
            :: else
            fi
        :: else -> break
        od;
        if
        :: !cut ->
            /* clear the places of the backups and saved log blocks, sync, remove the log */
            i = 0;
            do :: i < nclear -> write_plain(clear[i], 0); i++ :: else -> break od;
            if :: may_cut -> cut = true :: true fi;
            if :: !cut -> flush(i); magic0 = 0; d0.n = 0; nwob = 0 :: else fi
        :: else
        fi
    fi
}

/* The power cut, at any step; then the restore, maybe cut and run again. */
proctype Cut() {
    byte i, k, c, r, x, ntodo, nclear;
    byte img[NB];
    byte clear[MAXE];
    Ent todo[MAXE];
    LogBlk walk;
    bool valid, cut;
    atomic {
        !crashed -> crashed = true;
        power_cut(i);
        restore(true);
        if :: cut -> power_cut(i); restore(false) :: else fi;
        /* What must hold now. */
        if
        :: committed_done ->
            /* the commit completed: no log, every write there */
            assert(magic0 == 0 && dur[1] == last[1] && dur[2] == last[2])
        :: else ->
            /* the checkpoint is back: data blocks as at checkpoint, and no
               free block holds data written after it */
            assert(magic0 == 0 && dur[1] == 11 && dur[2] == 12);
            i = FIRST_FREE;
            do :: i < NB -> assert(!USER_DATA(dur[i])); i++ :: else -> break od
        fi
    }
}

init {
    byte i;
    dur[1] = 11; dur[2] = 12; last[1] = 11; last[2] = 12;
    i = FIRST_FREE;
    do :: i < NB -> kind[i] = FREE; i++ :: else -> break od;
    kind[1] = UNCHANGED; kind[2] = UNCHANGED;
    /* state 1 begins with an empty, durable log (the 0 -> 1 transition) */
    magic0 = 1; d0.n = 0; cur.n = 0;
    atomic {
        run Writer(1, 21);
        run Writer(2, 31);
        run Commit();
        run Cut()
    }
}
