// Every NBD wire constant this project uses, in one place. Values and names follow the NBD
// protocol document (NetworkBlockDevice/nbd doc/proto.md); section names are cited beside each
// group. All fields are big-endian on the wire (common/bytes.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace nbd {

// --- Magic numbers ("Newstyle negotiation", "Transmission") ---------------------------------
inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943;          // "NBDMAGIC"
inline constexpr uint64_t kIHaveOptMagic = 0x49484156454f5054;     // "IHAVEOPT"
inline constexpr uint64_t kOptionReplyMagic = 0x0003e889045565a9;  // option reply magic
inline constexpr uint32_t kRequestMagic = 0x25609513;              // NBD_REQUEST_MAGIC
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;          // NBD_SIMPLE_REPLY_MAGIC
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;      // NBD_STRUCTURED_REPLY_MAGIC

// --- Fixed message sizes ---------------------------------------------------------------------
inline constexpr size_t kServerGreetingSize = 18;  // NBDMAGIC, IHAVEOPT, handshake flags
inline constexpr size_t kClientFlagsSize = 4;
inline constexpr size_t kOptionHeaderSize = 16;        // IHAVEOPT, option, length
inline constexpr size_t kOptionReplyHeaderSize = 20;   // magic, option, reply type, length
inline constexpr size_t kExportNameReplySize = 10;     // size + transmission flags
inline constexpr size_t kExportNameZeroPadding = 124;  // omitted with NBD_FLAG_C_NO_ZEROES
inline constexpr size_t kRequestHeaderSize = 28;
inline constexpr size_t kSimpleReplySize = 16;
inline constexpr size_t kStructuredReplyHeaderSize = 20;

// Strings (export names, descriptions, error messages) "MUST be no longer than 4096 bytes"
// (proto.md, "Conventions").
inline constexpr size_t kMaxStringLength = 4096;

// --- Handshake flags, sent by the server (16 bits; "Handshake flags") -------------------------
inline constexpr uint16_t kFlagFixedNewstyle = 1u << 0;  // NBD_FLAG_FIXED_NEWSTYLE
inline constexpr uint16_t kFlagNoZeroes = 1u << 1;       // NBD_FLAG_NO_ZEROES

// --- Client flags (32 bits; "Client flags") ---------------------------------------------------
inline constexpr uint32_t kClientFlagFixedNewstyle = 1u << 0;  // NBD_FLAG_C_FIXED_NEWSTYLE
inline constexpr uint32_t kClientFlagNoZeroes = 1u << 1;       // NBD_FLAG_C_NO_ZEROES
inline constexpr uint32_t kKnownClientFlags = kClientFlagFixedNewstyle | kClientFlagNoZeroes;

// --- Options ("Option types") -----------------------------------------------------------------
inline constexpr uint32_t kOptExportName = 1;       // NBD_OPT_EXPORT_NAME
inline constexpr uint32_t kOptAbort = 2;            // NBD_OPT_ABORT
inline constexpr uint32_t kOptList = 3;             // NBD_OPT_LIST
inline constexpr uint32_t kOptStartTls = 5;         // NBD_OPT_STARTTLS
inline constexpr uint32_t kOptInfo = 6;             // NBD_OPT_INFO
inline constexpr uint32_t kOptGo = 7;               // NBD_OPT_GO
inline constexpr uint32_t kOptStructuredReply = 8;  // NBD_OPT_STRUCTURED_REPLY
inline constexpr uint32_t kOptListMetaContext = 9;  // NBD_OPT_LIST_META_CONTEXT
inline constexpr uint32_t kOptSetMetaContext = 10;  // NBD_OPT_SET_META_CONTEXT

// --- Option reply types ("Option reply types"); errors have bit 31 set -------------------------
inline constexpr uint32_t kRepAck = 1;          // NBD_REP_ACK
inline constexpr uint32_t kRepServer = 2;       // NBD_REP_SERVER
inline constexpr uint32_t kRepInfo = 3;         // NBD_REP_INFO
inline constexpr uint32_t kRepMetaContext = 4;  // NBD_REP_META_CONTEXT: context id + name
inline constexpr uint32_t kRepFlagError = 1u << 31;
inline constexpr uint32_t kRepErrUnsup = kRepFlagError + 1;          // NBD_REP_ERR_UNSUP
inline constexpr uint32_t kRepErrPolicy = kRepFlagError + 2;         // NBD_REP_ERR_POLICY
inline constexpr uint32_t kRepErrInvalid = kRepFlagError + 3;        // NBD_REP_ERR_INVALID
inline constexpr uint32_t kRepErrPlatform = kRepFlagError + 4;       // NBD_REP_ERR_PLATFORM
inline constexpr uint32_t kRepErrTlsReqd = kRepFlagError + 5;        // NBD_REP_ERR_TLS_REQD
inline constexpr uint32_t kRepErrUnknown = kRepFlagError + 6;        // NBD_REP_ERR_UNKNOWN
inline constexpr uint32_t kRepErrShutdown = kRepFlagError + 7;       // NBD_REP_ERR_SHUTDOWN
inline constexpr uint32_t kRepErrBlockSizeReqd = kRepFlagError + 8;  // NBD_REP_ERR_BLOCK_SIZE_REQD
inline constexpr uint32_t kRepErrTooBig = kRepFlagError + 9;         // NBD_REP_ERR_TOO_BIG

// --- Information types for NBD_REP_INFO ("NBD_REP_INFO") ---------------------------------------
inline constexpr uint16_t kInfoExport = 0;       // NBD_INFO_EXPORT: size + transmission flags
inline constexpr uint16_t kInfoName = 1;         // NBD_INFO_NAME
inline constexpr uint16_t kInfoDescription = 2;  // NBD_INFO_DESCRIPTION
inline constexpr uint16_t kInfoBlockSize = 3;    // NBD_INFO_BLOCK_SIZE: min, preferred, max

// --- Transmission flags (16 bits; "Transmission flags") ----------------------------------------
inline constexpr uint16_t kFlagHasFlags = 1u << 0;         // NBD_FLAG_HAS_FLAGS, always set
inline constexpr uint16_t kFlagReadOnly = 1u << 1;         // NBD_FLAG_READ_ONLY
inline constexpr uint16_t kFlagSendFlush = 1u << 2;        // NBD_FLAG_SEND_FLUSH
inline constexpr uint16_t kFlagSendFua = 1u << 3;          // NBD_FLAG_SEND_FUA
inline constexpr uint16_t kFlagRotational = 1u << 4;       // NBD_FLAG_ROTATIONAL
inline constexpr uint16_t kFlagSendTrim = 1u << 5;         // NBD_FLAG_SEND_TRIM
inline constexpr uint16_t kFlagSendWriteZeroes = 1u << 6;  // NBD_FLAG_SEND_WRITE_ZEROES
inline constexpr uint16_t kFlagSendDf = 1u << 7;           // NBD_FLAG_SEND_DF
inline constexpr uint16_t kFlagCanMultiConn = 1u << 8;     // NBD_FLAG_CAN_MULTI_CONN
inline constexpr uint16_t kFlagSendResize = 1u << 9;       // NBD_FLAG_SEND_RESIZE (not used)
inline constexpr uint16_t kFlagSendCache = 1u << 10;       // NBD_FLAG_SEND_CACHE
inline constexpr uint16_t kFlagSendFastZero = 1u << 11;    // NBD_FLAG_SEND_FAST_ZERO

// --- Commands ("Request types") ---------------------------------------------------------------
inline constexpr uint16_t kCmdRead = 0;         // NBD_CMD_READ
inline constexpr uint16_t kCmdWrite = 1;        // NBD_CMD_WRITE
inline constexpr uint16_t kCmdDisc = 2;         // NBD_CMD_DISC
inline constexpr uint16_t kCmdFlush = 3;        // NBD_CMD_FLUSH
inline constexpr uint16_t kCmdTrim = 4;         // NBD_CMD_TRIM
inline constexpr uint16_t kCmdCache = 5;        // NBD_CMD_CACHE
inline constexpr uint16_t kCmdWriteZeroes = 6;  // NBD_CMD_WRITE_ZEROES
inline constexpr uint16_t kCmdBlockStatus = 7;  // NBD_CMD_BLOCK_STATUS (base:allocation only)

// --- Command flags (16 bits; "Command flags") ---------------------------------------------------
inline constexpr uint16_t kCmdFlagFua = 1u << 0;       // NBD_CMD_FLAG_FUA
inline constexpr uint16_t kCmdFlagNoHole = 1u << 1;    // NBD_CMD_FLAG_NO_HOLE
inline constexpr uint16_t kCmdFlagDf = 1u << 2;        // NBD_CMD_FLAG_DF
inline constexpr uint16_t kCmdFlagReqOne = 1u << 3;    // NBD_CMD_FLAG_REQ_ONE
inline constexpr uint16_t kCmdFlagFastZero = 1u << 4;  // NBD_CMD_FLAG_FAST_ZERO

// --- Structured replies ("Structured reply flags", "Structured reply types") ------------------
inline constexpr uint16_t kReplyFlagDone = 1u << 0;          // NBD_REPLY_FLAG_DONE
inline constexpr uint16_t kReplyTypeNone = 0;                // NBD_REPLY_TYPE_NONE
inline constexpr uint16_t kReplyTypeOffsetData = 1;          // NBD_REPLY_TYPE_OFFSET_DATA
inline constexpr uint16_t kReplyTypeOffsetHole = 2;          // NBD_REPLY_TYPE_OFFSET_HOLE
inline constexpr uint16_t kReplyTypeBlockStatus = 5;         // NBD_REPLY_TYPE_BLOCK_STATUS
inline constexpr uint16_t kReplyTypeError = (1u << 15) + 1;  // NBD_REPLY_TYPE_ERROR

// --- Metadata contexts ("Metadata querying", "Metadata contexts") ------------------------------
// The one context we offer: "base:allocation", whose status flags are NBD_STATE_HOLE (not
// allocated) and NBD_STATE_ZERO (reads as zeros). Its id is ours to choose ("transient", an
// opaque value to the client).
inline constexpr std::string_view kBaseAllocation = "base:allocation";
inline constexpr uint32_t kBaseAllocationContextId = 1;
inline constexpr uint32_t kStateHole = 1u << 0;  // NBD_STATE_HOLE
inline constexpr uint32_t kStateZero = 1u << 1;  // NBD_STATE_ZERO
// Queries in one LIST/SET_META_CONTEXT beyond this earn NBD_REP_ERR_TOO_BIG (the spec allows
// it "if too many queries are requested").
inline constexpr uint32_t kMaxMetaContextQueries = 128;

// --- Error values ("Error values"); the only values allowed in a reply's error field -----------
inline constexpr uint32_t kEperm = 1;
inline constexpr uint32_t kEio = 5;
inline constexpr uint32_t kEnomem = 12;
inline constexpr uint32_t kEinval = 22;
inline constexpr uint32_t kEnospc = 28;
inline constexpr uint32_t kEoverflow = 75;
inline constexpr uint32_t kEnotsup = 95;
inline constexpr uint32_t kEshutdown = 108;

// --- Block size constraints ("Block size constraints") ----------------------------------------
// Requests shorter than 2^25 bytes "SHOULD NOT be considered a denial of service attack"; we
// never advertise or accept a larger READ/WRITE, so per-request buffers stay bounded.
inline constexpr uint32_t kMaxPayloadBytes = 1u << 25;
inline constexpr uint32_t kMaxMinimumBlockSize = 1u << 16;

}  // namespace nbd
