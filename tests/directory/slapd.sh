#!/usr/bin/env bash
# A throwaway OpenLDAP directory of the test city (dc=stadt,dc=example) for the LDAP sync tests:
# a real slapd (Debian's 2.5: apt-get install slapd ldap-utils), everything it has in one
# directory, reachable only on 127.0.0.1.
#
#   slapd.sh start DIR PORT           config in DIR, listens on ldap://127.0.0.1:PORT/ and, when
#                                     DIR/tls.crt and DIR/tls.key exist, ldaps://127.0.0.1:PORT+1/;
#                                     loads the base data when DIR/db is new (a second start on
#                                     the same DIR is a restart with the data kept)
#   slapd.sh stop DIR                 returns once slapd has exited
#   slapd.sh lock DIR UID             pwdAccountLockedTime: 000001010000Z (bind fails with 49)
#   slapd.sh unlock DIR UID           removes it again
#   slapd.sh remove DIR UID           deletes the user
#   slapd.sh add-users DIR N GROUP    uid=user00001 ... (password "pw"), all members of GROUP
#   slapd.sh empty-group DIR GROUP    GROUP keeps no user as member
#
# UID is a uid value (jmueller), GROUP a group's cn as it is (vpn-users, "Straßenbau, Tiefbau");
# the script finds the entry's DN itself, because not every user's RDN is uid=.
#
# Accounts: rootdn cn=admin,dc=stadt,dc=example / admin-secret (no limits, no ACLs);
# the reader heimweg uses: cn=heimweg,ou=services,dc=stadt,dc=example / reader-secret.
# Users: alice/wonderland, bob/builder, jmueller/grüße (DN cn=Müller\, Jürgen,ou=people,...);
# groups: vpn-users (all three), admins (alice), "Straßenbau, Tiefbau" (jmueller).
set -euo pipefail
# Without this, a failure inside $(...) would not stop the function that runs there.
shopt -s inherit_errexit

SUFFIX="dc=stadt,dc=example"
PEOPLE="ou=people,$SUFFIX"
GROUPS_BASE="ou=groups,$SUFFIX"
ROOTDN="cn=admin,$SUFFIX"
ROOTPW="admin-secret"
READER="cn=heimweg,ou=services,$SUFFIX"
# What an emptied group lists: groupOfNames needs one member, and a DN with no entry behind it
# gives no one a memberOf (the memberof overlay ignores dangling members by default).
NOBODY="cn=nobody,$GROUPS_BASE"

# No ~/.ldaprc or /etc/ldap/ldap.conf (BASE, TLS_REQCERT, ...) may change what the tools here do.
export LDAPNOINIT=1

die() { echo "slapd.sh: $*" >&2; exit 1; }

usage() {
  sed -n '/^#   slapd.sh start/,/^#$/s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

# A zombie (its parent has not reaped it yet) counts as gone.
is_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# Alive, and slapd: after a crash the pid may belong to someone else by now.
is_slapd() {
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = slapd ] && is_alive "$1"
}

# Changes go in as the rootdn: it is above the ACLs, the size limit and ppolicy.
as_admin() {
  local tool=$1 port
  shift
  [ -f "$DIR/port" ] || die "$DIR has no directory (no $DIR/port; run start first)"
  port=$(cat "$DIR/port")
  "$tool" -x -H "ldap://127.0.0.1:$port" -D "$ROOTDN" -w "$ROOTPW" "$@"
}

# RFC 4515: these four would change the filter's meaning.
filter_escape() {
  local s=$1
  s=${s//\\/\\5c}
  s=${s//\*/\\2a}
  s=${s//"("/\\28}
  s=${s//")"/\\29}
  printf %s "$s"
}

# The LDIF "dn:" line of the one entry matching FILTER under BASE, as ldapsearch prints it:
# "dn:: <base64>" for a DN with non-ASCII characters. ldapmodify reads either form, so the line
# is passed on as it is and never decoded.
dn_line() {
  local base=$1 filter=$2 out n
  out=$(as_admin ldapsearch -LLL -o ldif-wrap=no -b "$base" -s sub "$filter" 1.1)
  out=$(printf '%s\n' "$out" | grep '^dn:' || true)
  n=$(printf '%s' "$out" | grep -c '^dn:' || true)
  [ "$n" = 1 ] || die "$filter under $base: $n entries, expected 1"
  printf '%s\n' "$out"
}

user_dn_line() { dn_line "$PEOPLE" "(uid=$(filter_escape "$1"))"; }
group_dn_line() { dn_line "$GROUPS_BASE" "(&(objectClass=groupOfNames)(cn=$(filter_escape "$1")))"; }

write_config() {
  local tls=""
  if [ -f "$DIR/tls.crt" ] && [ -f "$DIR/tls.key" ]; then
    tls="TLSCertificateFile \"$DIR/tls.crt\"
TLSCertificateKeyFile \"$DIR/tls.key\""
  fi
  cat >"$DIR/slapd.conf" <<EOF
# Written by tests/directory/slapd.sh; rewritten on every start.
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema

modulepath /usr/lib/ldap
moduleload back_mdb
# memberof gives users memberOf; ppolicy makes pwdAccountLockedTime refuse binds (its schema
# is built into the module in 2.5).
moduleload memberof
moduleload ppolicy

# slapd's own default, written out because tests rely on it: a search without paged results
# ends with "Size limit exceeded" after 500 entries, as it would against many real directories.
sizelimit 500

# Adding a chunk of members to a big group checks each new value for duplicates by binary
# search instead of comparing it with every member there is (add-users 50000: 6-7 s, not 13-15).
sortvals member

$tls

# The root DSE must answer anyone: start polls it, and clients read supportedControl there.
access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read

database mdb
suffix "$SUFFIX"
rootdn "$ROOTDN"
rootpw $ROOTPW
directory "$DIR/db"
# No fsync: a test directory is thrown away, and with fsync bulk loads are 4-18 times slower.
dbnosync
# Writes through the map instead of a write() per page: 50,000 users in 7.3 s instead of 10.3.
envflags writemap
# The default map of 10 MB is too small for 50,000 users (about 90 MB). With writemap the
# file has this size from the start, but sparse.
maxsize 1073741824
index objectClass eq
index uid eq
index cn eq
index mail eq
index entryUUID eq
index memberOf eq

# The reader may page through any number of entries, while an unpaged search of its still ends
# after 500. size.prtotal (the total over all pages) defaults to the hard limit, which would end
# a paged search after 500 entries as well. No size.pr: with size.pr=500 a page size above 500
# is refused with adminLimitExceeded (11), while without it any page size works.
limits dn.exact="$READER" size.soft=500 size.hard=500 size.prtotal=unlimited

# Passwords are for binds only: nobody reads them, not even the reader.
access to attrs=userPassword
  by anonymous auth
  by * none
# The reader sees all of people and groups, operational attributes too (entryUUID, memberOf,
# pwdAccountLockedTime); a bound user sees their own entry.
access to dn.subtree="$PEOPLE"
  by dn.exact="$READER" read
  by self read
  by * none
access to dn.subtree="$GROUPS_BASE"
  by dn.exact="$READER" read
  by * none
access to * by * none

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
# Deleting a user also takes them out of their groups, as a real directory would (except a
# group's last member: groupOfNames cannot be empty, so that DN stays in the group).
memberof-refint TRUE

overlay ppolicy
ppolicy_default "cn=default,ou=policies,$SUFFIX"
EOF
}

# Groups come after the users so that the memberof overlay, which works only on a running
# server (not in slapadd), writes the users' memberOf as the groups go in.
base_ldif() {
  cat <<EOF
dn: $SUFFIX
objectClass: dcObject
objectClass: organization
dc: stadt
o: Stadt Example

dn: ou=policies,$SUFFIX
objectClass: organizationalUnit
ou: policies

# The policy comes early: ppolicy logs "policy subentry missing" for every entry added before
# it. It only makes ppolicy active; pwdMaxFailure stays 0, so wrong passwords in tests never
# lock anyone.
dn: cn=default,ou=policies,$SUFFIX
objectClass: organizationalRole
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE

dn: $PEOPLE
objectClass: organizationalUnit
ou: people

dn: $GROUPS_BASE
objectClass: organizationalUnit
ou: groups

dn: ou=services,$SUFFIX
objectClass: organizationalUnit
ou: services

dn: $READER
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: heimweg
userPassword: reader-secret
description: the VPN gateway's directory sync

dn: uid=alice,$PEOPLE
objectClass: inetOrgPerson
uid: alice
cn: Alice Example
sn: Example
mail: alice@stadt.example
userPassword: wonderland

dn: uid=bob,$PEOPLE
objectClass: inetOrgPerson
uid: bob
cn: Bob Beispiel
sn: Beispiel
mail: bob@stadt.example
userPassword: builder

dn: cn=Müller\, Jürgen,$PEOPLE
objectClass: inetOrgPerson
uid: jmueller
cn: Müller, Jürgen
sn: Müller
mail: juergen.mueller@stadt.example
userPassword: grüße

dn: cn=vpn-users,$GROUPS_BASE
objectClass: groupOfNames
cn: vpn-users
member: uid=alice,$PEOPLE
member: uid=bob,$PEOPLE
member: cn=Müller\, Jürgen,$PEOPLE

dn: cn=admins,$GROUPS_BASE
objectClass: groupOfNames
cn: admins
member: uid=alice,$PEOPLE

dn: cn=Straßenbau\, Tiefbau,$GROUPS_BASE
objectClass: groupOfNames
cn: Straßenbau, Tiefbau
member: cn=Müller\, Jürgen,$PEOPLE
EOF
}

cmd_start() {
  [ $# = 2 ] || usage
  local port=$2 pid fresh=1 urls ports p i
  mkdir -p "$1/db"
  # slapd.conf needs absolute paths.
  DIR=$(cd "$1" && pwd)
  case $port in '' | *[!0-9]*) die "PORT must be a number: $port" ;; esac
  if [ -f "$DIR/slapd.pid" ] && is_slapd "$(cat "$DIR/slapd.pid")"; then
    die "slapd is already running for $DIR (pid $(cat "$DIR/slapd.pid"))"
  fi
  [ -e "$DIR/db/data.mdb" ] && fresh=0
  write_config
  echo "$port" >"$DIR/port"
  urls="ldap://127.0.0.1:$port/"
  ports=("$port")
  if [ -f "$DIR/tls.crt" ] && [ -f "$DIR/tls.key" ]; then
    urls+=" ldaps://127.0.0.1:$((port + 1))/"
    ports+=("$((port + 1))")
  fi
  # Another server on the port would answer the readiness poll below in place of this slapd
  # (which exits on "Address already in use") and get the base data.
  for p in "${ports[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      die "127.0.0.1:$p is already in use"
    fi
  done
  # -d keeps slapd in the foreground, so $! is slapd itself and not a forked copy or a subshell.
  # Level "none" logs only errors (with -d 0 a failed start says nothing at all). The output
  # goes to the log and stdin is closed: a caller that collects this script's output would
  # otherwise wait for slapd's end.
  slapd -f "$DIR/slapd.conf" -h "$urls" -d none </dev/null >"$DIR/slapd.log" 2>&1 &
  pid=$!
  echo "$pid" >"$DIR/slapd.pid"
  for ((i = 0; i < 500; i++)); do
    # Not is_slapd: for its first moments the child is still a copy of this shell, not slapd.
    if ! is_alive "$pid"; then
      echo "slapd.sh: slapd exited during start; log:" >&2
      cat "$DIR/slapd.log" >&2
      exit 1
    fi
    if ldapsearch -x -o nettimeout=1 -H "ldap://127.0.0.1:$port" -b "" -s base 1.1 >/dev/null 2>&1; then
      break
    fi
    sleep 0.02
  done
  if ((i == 500)); then
    echo "slapd.sh: no answer on port $port after 10 s; log:" >&2
    cat "$DIR/slapd.log" >&2
    kill -TERM "$pid" 2>/dev/null || true
    exit 1
  fi
  if ((fresh)) && ! base_ldif | as_admin ldapadd >/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    die "loading the base data failed; slapd stopped"
  fi
}

cmd_stop() {
  [ $# = 1 ] || usage
  DIR=$1
  local pid i
  [ -f "$DIR/slapd.pid" ] || return 0
  pid=$(cat "$DIR/slapd.pid")
  if is_slapd "$pid"; then
    kill -TERM "$pid"
    # Right after a heavy write load slapd takes up to ~2 s to exit.
    for ((i = 0; i < 500; i++)); do
      is_slapd "$pid" || break
      sleep 0.02
    done
    if is_slapd "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      echo "slapd.sh: slapd $pid did not exit within 10 s of SIGTERM; killed it" >&2
      rm -f "$DIR/slapd.pid"
      exit 1
    fi
  fi
  rm -f "$DIR/slapd.pid"
}

# replace, not add/delete: locking a locked user or unlocking an unlocked one is no error.
cmd_lock() {
  [ $# = 2 ] || usage
  DIR=$1
  local dn
  dn=$(user_dn_line "$2")
  printf '%s\nchangetype: modify\nreplace: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n' \
    "$dn" | as_admin ldapmodify >/dev/null
}

cmd_unlock() {
  [ $# = 2 ] || usage
  DIR=$1
  local dn
  dn=$(user_dn_line "$2")
  printf '%s\nchangetype: modify\nreplace: pwdAccountLockedTime\n' "$dn" | as_admin ldapmodify >/dev/null
}

cmd_remove() {
  [ $# = 2 ] || usage
  DIR=$1
  local dn
  dn=$(user_dn_line "$2")
  printf '%s\nchangetype: delete\n' "$dn" | as_admin ldapmodify >/dev/null
}

cmd_add_users() {
  [ $# = 3 ] || usage
  DIR=$1
  local n=$2 group t0 t1 j pids=()
  case $n in '' | *[!0-9]*) die "N must be a number: $n" ;; esac
  ((n <= 99999)) || die "N must be at most 99999 (five-digit uids)"
  t0=$(date +%s.%N)
  group=$(group_dn_line "$3")
  # Two connections at once: ldapadd waits for each answer before it sends the next entry, and
  # slapd is busy with one add at a time otherwise (50,000 users: 5.2 s instead of 7.3).
  for j in 0 1; do
    N=$n J=$j PEOPLE=$PEOPLE awk 'BEGIN {
      for (i = 1; i <= ENVIRON["N"]; i++)
        if (i % 2 == ENVIRON["J"])
          printf "dn: uid=user%05d,%s\nobjectClass: inetOrgPerson\nuid: user%05d\ncn: Person %05d\nsn: Person\nmail: user%05d@stadt.example\nuserPassword: pw\n\n",
            i, ENVIRON["PEOPLE"], i, i, i
    }' | as_admin ldapadd >/dev/null &
    pids+=($!)
  done
  local failed=0
  for j in "${pids[@]}"; do
    wait "$j" || failed=1
  done
  ((failed == 0)) || die "adding the users failed"
  # Members go in 5,000 per modify: one modify per user would be 50,000 round trips, and
  # memberof then writes each new member's memberOf within that modify.
  N=$n PEOPLE=$PEOPLE GROUP=$group awk 'BEGIN {
    for (i = 1; i <= ENVIRON["N"]; i++) {
      if (i % 5000 == 1) printf "%s\nchangetype: modify\nadd: member\n", ENVIRON["GROUP"]
      printf "member: uid=user%05d,%s\n", i, ENVIRON["PEOPLE"]
      if (i % 5000 == 0 || i == ENVIRON["N"]) printf "\n"
    }
  }' | as_admin ldapmodify >/dev/null
  t1=$(date +%s.%N)
  awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "slapd.sh: added %d users in %.2f s\n", n, b - a }' >&2
}

cmd_empty_group() {
  [ $# = 2 ] || usage
  DIR=$1
  local dn
  dn=$(group_dn_line "$2")
  printf '%s\nchangetype: modify\nreplace: member\nmember: %s\n' "$dn" "$NOBODY" | as_admin ldapmodify >/dev/null
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  lock) cmd_lock "$@" ;;
  unlock) cmd_unlock "$@" ;;
  remove) cmd_remove "$@" ;;
  add-users) cmd_add_users "$@" ;;
  empty-group) cmd_empty_group "$@" ;;
  *) usage ;;
esac
