#!/usr/bin/env node
// Third-party OCPP charge point used by CI to prove the smartev CSMS interoperates
// with a station we did not write. Built on the npm package `ocpp-rpc` (pinned in
// package.json) in STRICT mode: every message we send and every response/call we
// receive is validated against the official OCPP JSON schemas of the negotiated
// subprotocol.
//
// Usage:
//   node station.mjs --url ws://127.0.0.1:PORT/ocpp --id STATION_ID --password PW \
//     --protocol ocpp1.6|ocpp2.0.1 --id-tag TAG --scenario session|remote|bad \
//     [--transaction-id ID] [--require-refusal] [--timeout 20] [--call-timeout 10] [--linger 0]
//
// Output: one JSON object per line on stdout, one per step:
//   {"step":"BootNotification","direction":"sent","ok":true,"request":{...},"response":{...}}
//   {"step":"RemoteStartTransaction","direction":"received","ok":true,"request":{...},"response":{...}}
//   {"step":"StartTransaction","direction":"sent","ok":false,"request":{...},"error":{"kind":"callerror","code":"...","message":"...","details":{...}}}
// and a last line {"step":"result","ok":true|false,"exitCode":N,...}. Scenarios session and
// remote print {"step":"summary","transactionId":...,"meterStartWh":1000,"meterStopWh":...,
// "energyWh":...} before it (session: 8500 / 7500 Wh; remote: 6000 / 5000 Wh).
// error.kind is one of: callerror (the CSMS answered with a CALLERROR), invalid-response (the
// CSMS's CALLRESULT failed the schema: rejected locally, nothing is sent back), invalid-call (a
// CSMS call failed the schema; ocpp-rpc answered it with a CALLERROR itself), unexpected (valid
// response, wrong status), bad-frame (unparsable frame or CALLRESULT/CALLERROR for an unknown
// message id), timeout, disconnected, wait-timeout, http / error (connect).
// Server calls the station does not implement are answered NotImplemented and printed with
// "handled":false; they do not fail the run.
//
// Scenarios (connector / EVSE 1):
//   session  boot, Available, Authorize, start, 3 meter samples, stop (EVDisconnected), Heartbeat.
//   remote   boot, Available, then wait --timeout s for RemoteStartTransaction (1.6) /
//            RequestStartTransaction (2.0.1), start with the id tag it carries, 2 meter samples,
//            wait for RemoteStopTransaction / RequestStopTransaction, stop (reason Remote).
//            Meanwhile it answers ChangeConfiguration, GetConfiguration, GetVariables,
//            SetVariables, Reset, UnlockConnector, TriggerMessage (and sends the triggered
//            message), SetChargingProfile, ClearChargingProfile, ChangeAvailability.
//            --linger N keeps the connection (and those handlers) up N s more.
//   bad      boot, then StartTransaction / TransactionEvent(Started) with --id-tag (meant to be
//            unknown), or with --transaction-id a StopTransaction / TransactionEvent(Ended) for a
//            transaction this station never opened. Exit 0 when a schema-valid response or a
//            CALLERROR came back; the step line has "refused":true|false; --require-refusal
//            turns refused:false into exit 1.
//
// Exit codes: 0 every step succeeded; 1 a step failed (CALLERROR, response failing the
// schema, unexpected status, call timeout, connection lost, invalid call from server);
// 2 could not connect (HTTP error such as 401, refused, subprotocol not agreed);
// 3 timed out waiting for the server to send a call (scenario remote); 64 usage error.

import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';

const EXIT_OK = 0;
const EXIT_STEP_FAILED = 1;
const EXIT_CONNECT_FAILED = 2;
const EXIT_WAIT_TIMEOUT = 3;
const EXIT_USAGE = 64;

const METER_START_WH = 1000;
const METER_STEP_WH = 2500; // 3 periodic samples -> 7500 Wh delivered in `session`

// ---------------------------------------------------------------------------
// command line

const USAGE = `usage: node station.mjs --url ws://HOST:PORT/ocpp --id STATION_ID [--password PW]
       --protocol ocpp1.6|ocpp2.0.1 [--id-tag TAG] --scenario session|remote|bad
       [--transaction-id ID] [--require-refusal] [--timeout SECONDS] [--call-timeout SECONDS]
       [--linger SECONDS]`;

function usage(msg) {
    process.stderr.write(`station.mjs: ${msg}\n${USAGE}\n`);
    process.exit(EXIT_USAGE);
}

let args;
try {
    ({ values: args } = parseArgs({
        options: {
            url: { type: 'string' },
            id: { type: 'string' },
            password: { type: 'string' },
            protocol: { type: 'string' },
            'id-tag': { type: 'string', default: 'INTEROP-TAG-1' },
            scenario: { type: 'string' },
            'transaction-id': { type: 'string' },
            'require-refusal': { type: 'boolean', default: false },
            timeout: { type: 'string', default: '20' },
            'call-timeout': { type: 'string', default: '10' },
            linger: { type: 'string', default: '0' },
            help: { type: 'boolean', short: 'h', default: false },
        },
        strict: true,
    }));
} catch (err) {
    usage(err.message);
}
if (args.help) {
    process.stdout.write(USAGE + '\n');
    process.exit(EXIT_OK);
}
for (const name of ['url', 'id', 'protocol', 'scenario']) {
    if (!args[name]) usage(`--${name} is required`);
}
if (!['ocpp1.6', 'ocpp2.0.1'].includes(args.protocol)) usage(`unsupported --protocol ${args.protocol}`);
if (!['session', 'remote', 'bad'].includes(args.scenario)) usage(`unknown --scenario ${args.scenario}`);
const seconds = (name) => {
    const v = Number(args[name]);
    if (!Number.isFinite(v) || v < 0) usage(`--${name} must be a number of seconds`);
    return v * 1000;
};
const WAIT_MS = seconds('timeout');
const CALL_TIMEOUT_MS = seconds('call-timeout');
const LINGER_MS = seconds('linger');
const V16 = args.protocol === 'ocpp1.6';

let ocppRpc;
try {
    ocppRpc = (await import('ocpp-rpc')).default; // CommonJS package: use the default export
} catch (err) {
    usage(`cannot load ocpp-rpc (${err.code ?? err.message}); run: npm ci --prefix tests/csms/interop`);
}
const { RPCClient, TimeoutError: RPCTimeoutError } = ocppRpc;
const ID_TAG = args['id-tag'];
const url = args.url.replace(/\/+$/, ''); // ocpp-rpc appends `/${identity}` itself

// ---------------------------------------------------------------------------
// output

let failed = false;

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

function describeError(err) {
    if (err && err.kind) return err; // already described
    const out = {};
    if (err && typeof err.rpcErrorCode === 'string') {
        out.kind = strictFailures.has(err) ? strictFailures.get(err) : 'callerror';
        out.code = err.rpcErrorCode;
        out.message = err.message || err.rpcErrorMessage || '';
        if (err.details && Object.keys(err.details).length) out.details = err.details;
    } else if (err instanceof RPCTimeoutError) {
        out.kind = 'timeout';
        out.message = `${err.message} (no response within ${CALL_TIMEOUT_MS / 1000} s)`;
    } else if (err && err.name === 'AbortError') {
        out.kind = 'disconnected';
        out.message = err.message;
        if (disconnected) Object.assign(out, { closeCode: disconnected.code, closeReason: disconnected.reason });
    } else {
        out.kind = 'error';
        if (err && err.code !== undefined) out.code = err.code;
        out.message = err && err.message ? err.message : String(err);
    }
    return out;
}

class StepFailure extends Error {
    constructor(exitCode, message) {
        super(message);
        this.exitCode = exitCode;
    }
}

// ---------------------------------------------------------------------------
// client

const client = new RPCClient({
    endpoint: url,
    identity: args.id,
    password: args.password ?? null, // HTTP Basic auth: base64(identity:password)
    protocols: [args.protocol],
    strictMode: true,
    reconnect: false, // a dropped connection must fail the run, not be papered over
    callTimeoutMs: CALL_TIMEOUT_MS,
    respondWithDetailedErrors: false,
});

// errors raised by strict-mode validation (as opposed to CALLERRORs sent by the server)
const strictFailures = new WeakMap();

client.on('strictValidationFailure', (ev) => {
    if (ev.error && typeof ev.error === 'object') {
        if (!ev.outbound && !ev.isCall) strictFailures.set(ev.error, 'invalid-response'); // server's CALLRESULT
        if (ev.outbound && ev.isCall) strictFailures.set(ev.error, 'invalid-request'); // our own call (a bug here)
    }
    if (!ev.outbound && ev.isCall) {
        // the server sent a call that does not match the schema; ocpp-rpc answered it
        // with a CALLERROR on its own and our handler never ran
        failed = true;
        emit({ step: ev.method, direction: 'received', ok: false, request: ev.params,
               error: { ...describeError(ev.error), kind: 'invalid-call' } });
    } else if (ev.outbound && !ev.isCall) {
        // our reply to a server call does not match the schema (a bug in this script)
        failed = true;
        emit({ step: ev.method, direction: 'received', ok: false, request: ev.params, response: ev.result,
               error: { ...describeError(ev.error), kind: 'invalid-reply' } });
    }
});

client.on('badMessage', ({ buffer, error, response }) => {
    failed = true;
    emit({ step: 'badMessage', direction: 'received', ok: false,
           message: Buffer.isBuffer(buffer) ? buffer.toString('utf8') : String(buffer),
           error: { ...describeError(error), kind: 'bad-frame' }, replied: response ?? null });
});

let disconnected = null;
const disconnectWaiters = new Set();
client.on('disconnect', ({ code, reason }) => {
    disconnected = { code, reason };
    for (const w of disconnectWaiters) w({ code, reason });
});

const now = () => new Date().toISOString();

function checkStatus(actual, expected, what) {
    if (actual !== expected) return `${what} is ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`;
    return null;
}

/**
 * Send one call and print its step line.
 * check(response) returns null when fine or a string describing what is wrong.
 */
async function step(method, params, { check, label, extra } = {}) {
    const line = { step: label ?? method, direction: 'sent' };
    try {
        const response = await client.call(method, params);
        const problem = check ? check(response) : null;
        if (problem) {
            failed = true;
            emit({ ...line, ok: false, request: params, response, ...(extra ?? {}), error: { kind: 'unexpected', message: problem } });
            throw new StepFailure(EXIT_STEP_FAILED, `${method}: ${problem}`);
        }
        emit({ ...line, ok: true, request: params, response, ...(extra ?? {}) });
        return response;
    } catch (err) {
        if (err instanceof StepFailure) throw err;
        failed = true;
        emit({ ...line, ok: false, request: params, ...(extra ?? {}), error: describeError(err) });
        throw new StepFailure(EXIT_STEP_FAILED, `${method}: ${err.message}`);
    }
}

/** Like step() but a CALLERROR from the server is a valid outcome (scenario bad). */
async function probe(method, params, refusedWhen) {
    try {
        const response = await client.call(method, params);
        const refused = refusedWhen(response);
        emit({ step: method, direction: 'sent', ok: true, request: params, response, refused });
        return refused;
    } catch (err) {
        const error = describeError(err);
        if (error.kind === 'callerror') {
            emit({ step: method, direction: 'sent', ok: true, request: params, callerror: error, refused: true });
            return true;
        }
        failed = true;
        emit({ step: method, direction: 'sent', ok: false, request: params, error });
        throw new StepFailure(EXIT_STEP_FAILED, `${method}: ${err.message}`);
    }
}

// ---------------------------------------------------------------------------
// waiting for server-initiated calls

const waiters = new Map(); // method -> [waiter]
const arrived = new Map(); // method -> [params] accepted before anyone waited for them

function waitForCall(method) {
    const early = arrived.get(method);
    if (early?.length) return Promise.resolve(early.shift());
    return new Promise((resolve, reject) => {
        const entry = { resolve: (v) => { cleanup(); resolve(v); } };
        const timer = setTimeout(() => {
            cleanup();
            emit({ step: `wait:${method}`, ok: false, error: { kind: 'wait-timeout', message: `no ${method} from the server within ${WAIT_MS / 1000} s` } });
            reject(new StepFailure(EXIT_WAIT_TIMEOUT, `timed out waiting for ${method}`));
        }, WAIT_MS);
        const onDisc = ({ code, reason }) => {
            cleanup();
            emit({ step: `wait:${method}`, ok: false, error: { kind: 'disconnected', code, reason } });
            reject(new StepFailure(EXIT_STEP_FAILED, `connection closed while waiting for ${method}`));
        };
        function cleanup() {
            clearTimeout(timer);
            disconnectWaiters.delete(onDisc);
            waiters.set(method, (waiters.get(method) ?? []).filter((e) => e !== entry));
        }
        if (disconnected) return onDisc(disconnected);
        disconnectWaiters.add(onDisc);
        waiters.set(method, [...(waiters.get(method) ?? []), entry]);
    });
}

/** An accepted server call the scenario may be waiting for. */
function notifyWaiters(method, value) {
    // let ocpp-rpc send our CALLRESULT before the scenario reacts to the call
    setTimeout(() => {
        const list = waiters.get(method) ?? [];
        if (list.length) list[0].resolve(value);
        else arrived.set(method, [...(arrived.get(method) ?? []), value]);
    }, 10);
}

const stopRequested = () => Boolean(arrived.get(V16 ? 'RemoteStopTransaction' : 'RequestStopTransaction')?.length);

// ---------------------------------------------------------------------------
// station state

const state = {
    transactionId: null, // 1.6: integer from the CSMS; 2.0.1: uuid generated here
    seqNo: 0,
    meterWh: METER_START_WH,
    soc: 20,
    remoteStartPending: false,
    chargingProfiles: [],
};

const config16 = new Map([
    ['HeartbeatInterval', { value: '300', readonly: false }],
    ['MeterValueSampleInterval', { value: '60', readonly: false }],
    ['MeterValuesSampledData', { value: 'Energy.Active.Import.Register,Power.Active.Import,SoC', readonly: false }],
    ['AuthorizeRemoteTxRequests', { value: 'false', readonly: false }],
    ['ConnectionTimeOut', { value: '60', readonly: false }],
    ['LocalAuthorizeOffline', { value: 'false', readonly: false }],
    ['NumberOfConnectors', { value: '1', readonly: true }],
    ['SupportedFeatureProfiles', { value: 'Core,RemoteTrigger,SmartCharging', readonly: true }],
    ['ChargeProfileMaxStackLevel', { value: '8', readonly: true }],
]);

// 2.0.1 device model: "Component/Variable" -> {value, readonly}
const vars201 = new Map([
    ['OCPPCommCtrlr/HeartbeatInterval', { value: '300', readonly: false }],
    ['SampledDataCtrlr/TxUpdatedInterval', { value: '60', readonly: false }],
    ['SampledDataCtrlr/TxUpdatedMeasurands', { value: 'Energy.Active.Import.Register,Power.Active.Import,SoC', readonly: false }],
    ['AuthCtrlr/AuthorizeRemoteStart', { value: 'false', readonly: false }],
    ['TxCtrlr/EVConnectionTimeOut', { value: '60', readonly: false }],
    ['SecurityCtrlr/Identity', { value: args.id, readonly: true }],
    ['SmartChargingCtrlr/Enabled', { value: 'true', readonly: false }],
]);

function sampledValues16(context) {
    return [
        { value: String(state.meterWh), context, measurand: 'Energy.Active.Import.Register', unit: 'Wh', location: 'Outlet' },
        { value: '11000', context, measurand: 'Power.Active.Import', unit: 'W', location: 'Outlet' },
        { value: String(state.soc), context, measurand: 'SoC', unit: 'Percent', location: 'EV' },
    ];
}

function meterValue201(context, full = true) {
    const sv = [{ value: state.meterWh, context, measurand: 'Energy.Active.Import.Register', location: 'Outlet', unitOfMeasure: { unit: 'Wh' } }];
    if (full) {
        sv.push({ value: 11000, context, measurand: 'Power.Active.Import', location: 'Outlet', unitOfMeasure: { unit: 'W' } });
        sv.push({ value: state.soc, context, measurand: 'SoC', location: 'EV', unitOfMeasure: { unit: 'Percent' } });
    }
    return [{ timestamp: now(), sampledValue: sv }];
}

function advanceMeter() {
    state.meterWh += METER_STEP_WH;
    state.soc = Math.min(100, state.soc + 5);
}

// ---------------------------------------------------------------------------
// handlers for calls sent by the CSMS

const background = new Set(); // follow-up calls (TriggerMessage) still running
function later(fn) {
    const p = new Promise((r) => setTimeout(r, 10)).then(fn).catch(() => { /* already reported */ });
    background.add(p);
    p.finally(() => background.delete(p));
}

function received(method, params, response, extra) {
    emit({ step: method, direction: 'received', ok: true, request: params, response, ...(extra ?? {}) });
    return response;
}

async function sendStatus(status, label) {
    if (V16) {
        return step('StatusNotification', { connectorId: 1, errorCode: 'NoError', status, timestamp: now() }, { label });
    }
    return step('StatusNotification', { timestamp: now(), connectorStatus: status, evseId: 1, connectorId: 1 }, { label });
}

async function sendTriggered(requested) {
    const extra = { triggered: true };
    switch (requested) {
        case 'BootNotification':
            return step('BootNotification', bootRequest(), { extra });
        case 'Heartbeat':
            return step('Heartbeat', {}, { extra });
        case 'StatusNotification': {
            const status = V16 ? (state.transactionId !== null ? 'Charging' : 'Available')
                               : (state.transactionId !== null ? 'Occupied' : 'Available');
            return V16
                ? step('StatusNotification', { connectorId: 1, errorCode: 'NoError', status, timestamp: now() }, { extra })
                : step('StatusNotification', { timestamp: now(), connectorStatus: status, evseId: 1, connectorId: 1 }, { extra });
        }
        case 'MeterValues':
            if (V16) {
                const p = { connectorId: 1, meterValue: [{ timestamp: now(), sampledValue: sampledValues16('Trigger') }] };
                if (state.transactionId !== null) p.transactionId = state.transactionId;
                return step('MeterValues', p, { extra });
            }
            return step('MeterValues', { evseId: 1, meterValue: meterValue201('Trigger') }, { extra });
        default:
            return undefined;
    }
}

const TRIGGERABLE = new Set(['BootNotification', 'Heartbeat', 'StatusNotification', 'MeterValues']);

function registerHandlers() {
    // --- remote start / stop
    if (V16) {
        client.handle('RemoteStartTransaction', ({ params }) => {
            const ok = state.transactionId === null && !state.remoteStartPending && (params.connectorId ?? 1) === 1;
            if (ok) state.remoteStartPending = true;
            const res = received('RemoteStartTransaction', params, { status: ok ? 'Accepted' : 'Rejected' });
            if (ok) notifyWaiters('RemoteStartTransaction', params);
            return res;
        });
        client.handle('RemoteStopTransaction', ({ params }) => {
            const ok = state.transactionId !== null && params.transactionId === state.transactionId;
            const res = received('RemoteStopTransaction', params, { status: ok ? 'Accepted' : 'Rejected' });
            if (ok) notifyWaiters('RemoteStopTransaction', params);
            return res;
        });
    } else {
        client.handle('RequestStartTransaction', ({ params }) => {
            const ok = state.transactionId === null && !state.remoteStartPending && (params.evseId ?? 1) === 1;
            if (ok) state.remoteStartPending = true;
            const res = received('RequestStartTransaction', params, { status: ok ? 'Accepted' : 'Rejected' });
            if (ok) notifyWaiters('RequestStartTransaction', params);
            return res;
        });
        client.handle('RequestStopTransaction', ({ params }) => {
            const ok = state.transactionId !== null && params.transactionId === state.transactionId;
            const res = received('RequestStopTransaction', params, { status: ok ? 'Accepted' : 'Rejected' });
            if (ok) notifyWaiters('RequestStopTransaction', params);
            return res;
        });
    }

    // --- configuration
    if (V16) {
        client.handle('ChangeConfiguration', ({ params }) => {
            const entry = config16.get(params.key);
            let status = 'NotSupported';
            if (entry && entry.readonly) status = 'Rejected';
            else if (entry) { entry.value = params.value; status = 'Accepted'; }
            return received('ChangeConfiguration', params, { status });
        });
        client.handle('GetConfiguration', ({ params }) => {
            const keys = params.key?.length ? params.key : [...config16.keys()];
            const configurationKey = [];
            const unknownKey = [];
            for (const key of keys) {
                const e = config16.get(key);
                if (e) configurationKey.push({ key, readonly: e.readonly, value: e.value });
                else unknownKey.push(key);
            }
            const res = { configurationKey };
            if (unknownKey.length) res.unknownKey = unknownKey;
            return received('GetConfiguration', params, res);
        });
    } else {
        client.handle('GetVariables', ({ params }) => {
            const getVariableResult = params.getVariableData.map(({ component, variable, attributeType }) => {
                const e = vars201.get(`${component.name}/${variable.name}`);
                const known = [...vars201.keys()].some((k) => k.startsWith(`${component.name}/`));
                const r = { component, variable };
                if (attributeType) r.attributeType = attributeType;
                if (!e) r.attributeStatus = known ? 'UnknownVariable' : 'UnknownComponent';
                else if (attributeType && attributeType !== 'Actual') r.attributeStatus = 'NotSupportedAttributeType';
                else { r.attributeStatus = 'Accepted'; r.attributeValue = e.value; }
                return r;
            });
            return received('GetVariables', params, { getVariableResult });
        });
        client.handle('SetVariables', ({ params }) => {
            const setVariableResult = params.setVariableData.map(({ component, variable, attributeType, attributeValue }) => {
                const e = vars201.get(`${component.name}/${variable.name}`);
                const known = [...vars201.keys()].some((k) => k.startsWith(`${component.name}/`));
                const r = { component, variable };
                if (attributeType) r.attributeType = attributeType;
                if (!e) r.attributeStatus = known ? 'UnknownVariable' : 'UnknownComponent';
                else if (attributeType && attributeType !== 'Actual') r.attributeStatus = 'NotSupportedAttributeType';
                else if (e.readonly) r.attributeStatus = 'Rejected';
                else { e.value = attributeValue; r.attributeStatus = 'Accepted'; }
                return r;
            });
            return received('SetVariables', params, { setVariableResult });
        });
    }

    // --- misc operations (same names in both versions, different payloads)
    client.handle('Reset', ({ params }) => received('Reset', params, { status: 'Accepted' }, { note: 'acknowledged, not performed' }));
    client.handle('UnlockConnector', ({ params }) => received('UnlockConnector', params, { status: 'Unlocked' }));
    client.handle('ChangeAvailability', ({ params }) => received('ChangeAvailability', params, { status: 'Accepted' }));
    client.handle('SetChargingProfile', ({ params }) => {
        state.chargingProfiles.push(V16 ? params.csChargingProfiles : params.chargingProfile);
        return received('SetChargingProfile', params, { status: 'Accepted' });
    });
    client.handle('ClearChargingProfile', ({ params }) => {
        const had = state.chargingProfiles.length > 0;
        state.chargingProfiles = [];
        return received('ClearChargingProfile', params, { status: had ? 'Accepted' : 'Unknown' });
    });
    client.handle('TriggerMessage', ({ params }) => {
        const requested = params.requestedMessage;
        const status = TRIGGERABLE.has(requested) ? 'Accepted' : 'NotImplemented';
        const res = received('TriggerMessage', params, { status });
        if (status === 'Accepted') later(() => sendTriggered(requested));
        return res;
    });

    // Anything else: no wildcard handler on purpose. ocpp-rpc then answers with the
    // spec's NotImplemented CALLERROR (with a wildcard handler, strict mode would answer
    // an unknown action with ProtocolError "Schema ... is missing" instead).
    client.on('callError', ({ outbound, method, params, error }) => {
        if (!outbound && error?.rpcErrorCode === 'NotImplemented') {
            emit({ step: method, direction: 'received', ok: true, request: params, handled: false,
                   callerror: { code: 'NotImplemented', message: error.message } });
        }
    });
}

// ---------------------------------------------------------------------------
// scenarios

function bootRequest() {
    return V16
        ? { chargePointVendor: 'smartev-interop', chargePointModel: 'ocpp-rpc-station', chargePointSerialNumber: args.id.slice(0, 25), firmwareVersion: 'ocpp-rpc-2.2.1' }
        : { reason: 'PowerUp', chargingStation: { model: 'ocpp-rpc-station', vendorName: 'smartev-interop', serialNumber: args.id.slice(0, 25), firmwareVersion: 'ocpp-rpc-2.2.1' } };
}

async function boot() {
    await step('BootNotification', bootRequest(), { check: (r) => checkStatus(r.status, 'Accepted', 'status') });
    await sendStatus('Available');
}

const idToken = (tag) => ({ idToken: tag, type: 'ISO14443' });

// --- OCPP 1.6 ---------------------------------------------------------------

async function start16(idTag, reason) {
    await sendStatus('Preparing');
    const res = await step('StartTransaction', { connectorId: 1, idTag, meterStart: state.meterWh, timestamp: now() }, {
        check: (r) => checkStatus(r.idTagInfo?.status, 'Accepted', 'idTagInfo.status'),
        extra: { via: reason },
    });
    state.transactionId = res.transactionId;
    state.remoteStartPending = false;
    await sendStatus('Charging');
}

async function meter16(n) {
    for (let i = 0; i < n && !stopRequested(); i++) {
        advanceMeter();
        await step('MeterValues', {
            connectorId: 1,
            transactionId: state.transactionId,
            meterValue: [{ timestamp: now(), sampledValue: sampledValues16('Sample.Periodic') }],
        });
    }
}

async function stop16(idTag, reason) {
    const transactionId = state.transactionId;
    await step('StopTransaction', {
        transactionId,
        idTag,
        meterStop: state.meterWh,
        timestamp: now(),
        reason,
        transactionData: [{ timestamp: now(), sampledValue: sampledValues16('Transaction.End') }],
    }, { check: (r) => (r.idTagInfo && r.idTagInfo.status !== 'Accepted' ? `idTagInfo.status is ${r.idTagInfo.status}` : null) });
    state.transactionId = null;
    await sendStatus('Finishing');
    await sendStatus('Available');
    return transactionId;
}

// --- OCPP 2.0.1 -------------------------------------------------------------

async function txEvent(eventType, triggerReason, transactionInfo, more = {}, opts = {}) {
    const params = {
        eventType,
        timestamp: now(),
        triggerReason,
        seqNo: state.seqNo,
        transactionInfo,
        ...more,
    };
    const res = await step('TransactionEvent', params, { label: `TransactionEvent(${eventType})`, ...opts });
    state.seqNo += 1;
    return res;
}

// 2.0.1 E01/E02: idTokenInfo is required in the response when the request carried an idToken
const idTokenAccepted = (r) => checkStatus(r.idTokenInfo?.status, 'Accepted', 'idTokenInfo.status');
const idTokenNotRefused = (r) => (r.idTokenInfo && r.idTokenInfo.status !== 'Accepted' ? `idTokenInfo.status is ${r.idTokenInfo.status}` : null);

async function start201(token, triggerReason, remoteStartId) {
    await sendStatus('Occupied');
    state.transactionId = randomUUID(); // 2.0.1: the station generates the transaction id
    state.seqNo = 0;
    const transactionInfo = { transactionId: state.transactionId, chargingState: 'Charging' };
    if (remoteStartId !== undefined) transactionInfo.remoteStartId = remoteStartId;
    await txEvent('Started', triggerReason, transactionInfo, {
        idToken: token,
        evse: { id: 1, connectorId: 1 },
        meterValue: meterValue201('Transaction.Begin', false),
    }, { check: idTokenAccepted });
    state.remoteStartPending = false;
}

async function meter201(n) {
    for (let i = 0; i < n && !stopRequested(); i++) {
        advanceMeter();
        await txEvent('Updated', 'MeterValuePeriodic',
            { transactionId: state.transactionId, chargingState: 'Charging' },
            { meterValue: meterValue201('Sample.Periodic') });
    }
}

async function stop201(triggerReason, stoppedReason, chargingState) {
    const transactionId = state.transactionId;
    const more = { meterValue: meterValue201('Transaction.End') };
    await txEvent('Ended', triggerReason, { transactionId, chargingState, stoppedReason }, more, { check: idTokenNotRefused });
    state.transactionId = null;
    await sendStatus('Available');
    return transactionId;
}

// --- scenario bodies --------------------------------------------------------

function summary(transactionId) {
    emit({ step: 'summary', ok: true, transactionId, meterStartWh: METER_START_WH, meterStopWh: state.meterWh,
           energyWh: state.meterWh - METER_START_WH });
}

async function scenarioSession() {
    await boot();
    let transactionId;
    if (V16) {
        await step('Authorize', { idTag: ID_TAG }, { check: (r) => checkStatus(r.idTagInfo?.status, 'Accepted', 'idTagInfo.status') });
        await start16(ID_TAG, 'local');
        await meter16(3);
        transactionId = await stop16(ID_TAG, 'EVDisconnected');
    } else {
        const token = idToken(ID_TAG);
        await step('Authorize', { idToken: token }, { check: (r) => checkStatus(r.idTokenInfo?.status, 'Accepted', 'idTokenInfo.status') });
        await start201(token, 'Authorized');
        await meter201(3);
        transactionId = await stop201('EVCommunicationLost', 'EVDisconnected', 'Idle');
    }
    await step('Heartbeat', {});
    summary(transactionId);
}

async function scenarioRemote() {
    await boot();
    let transactionId;
    if (V16) {
        const startReq = await waitForCall('RemoteStartTransaction');
        await start16(startReq.idTag, 'RemoteStartTransaction');
        await meter16(2);
        await waitForCall('RemoteStopTransaction');
        transactionId = await stop16(startReq.idTag, 'Remote');
    } else {
        const startReq = await waitForCall('RequestStartTransaction');
        await start201(startReq.idToken, 'RemoteStart', startReq.remoteStartId);
        await meter201(2);
        await waitForCall('RequestStopTransaction');
        transactionId = await stop201('RemoteStop', 'Remote', 'EVConnected');
    }
    summary(transactionId);
}

async function scenarioBad() {
    await boot();
    let refused;
    const txId = args['transaction-id'];
    if (V16) {
        if (txId !== undefined) {
            const n = Number(txId);
            if (!Number.isInteger(n)) usage('--transaction-id must be an integer for ocpp1.6');
            refused = await probe('StopTransaction', {
                transactionId: n, idTag: ID_TAG, meterStop: METER_START_WH + 100, timestamp: now(), reason: 'Local',
            }, (r) => Boolean(r.idTagInfo && r.idTagInfo.status !== 'Accepted'));
        } else {
            refused = await probe('StartTransaction', {
                connectorId: 1, idTag: ID_TAG, meterStart: METER_START_WH, timestamp: now(),
            }, (r) => r.idTagInfo?.status !== 'Accepted');
        }
    } else if (txId !== undefined) {
        refused = await probe('TransactionEvent', {
            eventType: 'Ended', timestamp: now(), triggerReason: 'StopAuthorized', seqNo: 0,
            transactionInfo: { transactionId: txId, stoppedReason: 'Local' },
            idToken: idToken(ID_TAG), evse: { id: 1, connectorId: 1 },
        }, (r) => Boolean(r.idTokenInfo && r.idTokenInfo.status !== 'Accepted'));
    } else {
        refused = await probe('TransactionEvent', {
            eventType: 'Started', timestamp: now(), triggerReason: 'Authorized', seqNo: 0,
            transactionInfo: { transactionId: randomUUID(), chargingState: 'Charging' },
            idToken: idToken(ID_TAG), evse: { id: 1, connectorId: 1 },
            meterValue: [{ timestamp: now(), sampledValue: [{ value: METER_START_WH, context: 'Transaction.Begin', measurand: 'Energy.Active.Import.Register', unitOfMeasure: { unit: 'Wh' } }] }],
        }, (r) => Boolean(r.idTokenInfo && r.idTokenInfo.status !== 'Accepted'));
    }
    if (args['require-refusal'] && !refused) {
        failed = true;
        emit({ step: 'require-refusal', ok: false, error: { kind: 'unexpected', message: 'the server accepted the request' } });
        throw new StepFailure(EXIT_STEP_FAILED, 'server accepted a request it should refuse');
    }
}

// ---------------------------------------------------------------------------
// main

async function main() {
    registerHandlers();
    try {
        const { response } = await client.connect();
        emit({ step: 'connect', ok: true, url: `${url}/${encodeURIComponent(args.id)}`, protocol: client.protocol,
               status: response?.statusCode });
    } catch (err) {
        const error = describeError(err);
        if (err && err.response) error.kind = 'http';
        emit({ step: 'connect', ok: false, url: `${url}/${encodeURIComponent(args.id)}`, error });
        emit({ step: 'result', ok: false, exitCode: EXIT_CONNECT_FAILED });
        return EXIT_CONNECT_FAILED;
    }

    let exitCode = EXIT_OK;
    try {
        if (args.scenario === 'session') await scenarioSession();
        else if (args.scenario === 'remote') await scenarioRemote();
        else await scenarioBad();
        if (LINGER_MS > 0) await new Promise((r) => setTimeout(r, LINGER_MS));
        await Promise.allSettled([...background]);
    } catch (err) {
        exitCode = err instanceof StepFailure ? err.exitCode : EXIT_STEP_FAILED;
        if (!(err instanceof StepFailure)) emit({ step: 'internal', ok: false, error: describeError(err) });
    }
    if (exitCode === EXIT_OK && failed) exitCode = EXIT_STEP_FAILED;

    if (!disconnected) {
        try {
            await Promise.race([client.close({ code: 1000, reason: 'done', awaitPending: true }),
                                new Promise((r) => setTimeout(r, 2000))]);
        } catch { /* ignore */ }
    } else if (exitCode === EXIT_OK) {
        exitCode = EXIT_STEP_FAILED;
        emit({ step: 'disconnect', ok: false, error: { kind: 'disconnected', ...disconnected } });
    }
    emit({ step: 'result', ok: exitCode === EXIT_OK, exitCode, scenario: args.scenario, protocol: args.protocol });
    return exitCode;
}

main().then((code) => process.exit(code), (err) => {
    emit({ step: 'internal', ok: false, error: describeError(err) });
    process.exit(EXIT_STEP_FAILED);
});
