// Runs a declarative Jenkinsfile on real Groovy (the language Jenkins runs it in) with a step
// harness giving the semantics the safedeploy pipelines rely on: `environment` evaluated in order
// (an unknown `${NAME}` fails the build, as in Jenkins), `parameters`, stages in order, `sh` with
// the environment (`sh -xe`, as Jenkins), a failing step skipping later stages, stage and
// pipeline `post` conditions in Jenkins' fixed order (always, changed, fixed, regression,
// aborted, failure, success, unstable, unsuccessful, cleanup — whatever order the file writes
// them in), `lock`, `withCredentials` (scoped to its block, values masked as ****), `junit`,
// `archiveArtifacts`, `writeFile`, `timeout`, `publishHTML`, `script` with `currentBuild`, the
// Generic Webhook Trigger's variables, and shared-library steps (`@Library` + vars/NAME.groovy).
//
// Sections, options, parameters, triggers and step arguments are checked against what Jenkins
// and these plugins accept; anything else is refused by name, so a typo fails here as it would
// on a controller (the harness is stricter than Jenkins in one way: an unknown named argument
// of a step is an error, where Jenkins only warns about some).
//
//   scripts/run-jenkinsfile [options] JENKINSFILE...        (see `--help`)
//
// Exit: 0 SUCCESS; 1 UNSTABLE, FAILURE or ABORTED; 2 the Jenkinsfile is not valid (a compile
// error, a misplaced section) or a bad option; 4 the webhook did not trigger the job.

import groovy.json.JsonOutput
import groovy.json.JsonSlurper
import groovy.xml.XmlSlurper
import java.nio.channels.FileChannel
import java.nio.file.FileSystems
import java.nio.file.Files
import java.nio.file.Path
import java.nio.file.Paths
import java.nio.file.StandardCopyOption
import java.nio.file.StandardOpenOption
import java.util.concurrent.TimeUnit
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.MultipleCompilationErrorsException

/** A Jenkinsfile that Jenkins would refuse before running it: exit 2. */
class InvalidPipeline extends RuntimeException {
    InvalidPipeline(String msg) { super(msg) }
}

/** A step that failed (a non-zero `sh`, `error`, a missing report): the stage fails. */
class StepFailure extends RuntimeException {
    StepFailure(String msg) { super(msg) }
}

/** `timeout` ran out: the build is ABORTED, as Jenkins' timeout step makes it. */
class TimeoutAbort extends RuntimeException {
    TimeoutAbort(String msg) { super(msg) }
}

/** Jenkins' result order: a build's result only gets worse. */
class Result {
    static final List<String> ORDER = ['SUCCESS', 'UNSTABLE', 'FAILURE', 'NOT_BUILT', 'ABORTED']
    static String worse(String a, String b) { ORDER.indexOf(a) >= ORDER.indexOf(b) ? a : b }
}

/** `currentBuild`: result, currentResult, description, number, displayName. */
class CurrentBuild {
    Run run
    String description
    String displayName
    String getCurrentResult() { run.result }
    String getResult() { run.resultSet ? run.result : null }
    void setResult(String r) { run.worsen(r); run.resultSet = true }
    int getNumber() { run.env.BUILD_NUMBER as int }
}

/** `env`: the environment in effect at the step, read and written as properties. */
class EnvGlobal {
    private final Run run
    EnvGlobal(Run run) { this.@run = run }
    Object getProperty(String name) { this.@run.currentEnv()[name] }
    void setProperty(String name, Object value) { this.@run.pipelineEnv[name] = value?.toString() }
}

/** One build of one Jenkinsfile. */
class Run {
    static Run current
    Map<String, String> env = [:]            // the agent's and Jenkins' variables
    Map<String, String> pipelineEnv = [:]    // the `environment` directive, then env.X = ...
    List<Map<String, String>> scopes = []    // withCredentials, withEnv, a stage's environment
    Map<String, Object> params = [:]
    Map<String, Object> credentials = [:]
    List<String> secrets = []
    Path workspace
    Path buildDir
    Path lockDir
    boolean stubSh
    List<java.util.regex.Pattern> skipSh = []
    List<java.util.regex.Pattern> failSh = []
    String result = 'SUCCESS'
    boolean resultSet
    String stage
    List<String> heldLocks = []
    long deadline = Long.MAX_VALUE
    long startedMillis = System.currentTimeMillis()
    CurrentBuild currentBuild
    Map<String, Script> libraryVars = [:]
    // What the build did, for the result file.
    List<Map> stages = []
    List<Map> steps = []
    List<Map> post = []
    List<String> archived = []
    List<Map> html = []
    List<Map> junit = []
    List<String> errors = []
    Map<String, Object> options = [:]
    Map<String, Object> triggerVariables = [:]

    Map<String, String> currentEnv() {
        Map<String, String> e = [:]
        e.putAll(env)
        e.putAll(pipelineEnv)
        scopes.each { e.putAll(it) }
        e
    }

    void worsen(String r) { result = Result.worse(result, r) }

    String mask(String s) {
        String out = s
        secrets.findAll { it }.sort { -it.length() }.each { out = out.replace(it, '****') }
        out
    }

    void log(String line) {
        println(mask(line))
        System.out.flush()
    }

    Path inWorkspace(String rel) { workspace.resolve(rel).normalize() }

    /** Files under the workspace matching an Ant-style pattern list ("a/*.xml, b/**"). */
    List<Path> matching(String patterns) {
        List<Path> found = []
        patterns.split(',')*.trim().findAll { it }.each { pattern ->
            def matcher = FileSystems.default.getPathMatcher("glob:${pattern}")
            Files.walk(workspace).withCloseable { stream ->
                stream.filter { Files.isRegularFile(it) && matcher.matches(workspace.relativize(it)) }
                    .forEach { found << it }
            }
        }
        found.unique().sort()
    }

    long remainingMillis() { deadline == Long.MAX_VALUE ? Long.MAX_VALUE : deadline - System.currentTimeMillis() }
}

/** The named arguments a step or directive takes; anything else is refused by name. */
class Args {
    static Map<String, Object> of(String step, Object arg, String single, List<String> allowed) {
        Map<String, Object> m
        if (arg instanceof Map) {
            m = (Map<String, Object>) arg
        } else if (arg instanceof CharSequence && single) {
            m = [(single): arg.toString()]
        } else {
            throw new StepFailure("${step}: expected named arguments (${allowed.join(', ')}), got ${arg?.getClass()?.simpleName}")
        }
        List<String> unknown = m.keySet().findAll { !(it in allowed) } as List<String>
        if (unknown) {
            throw new StepFailure("${step}: unknown argument(s) ${unknown.join(', ')}; ${step} takes ${allowed.join(', ')}")
        }
        m
    }
}

/** The base of every Jenkinsfile and library var: the steps. */
abstract class PipelineScript extends Script {
    static final List<String> STEPS = ['archiveArtifacts', 'dir', 'echo', 'error', 'fileExists', 'isUnix',
        'junit', 'lock', 'pipeline', 'publishHTML', 'readFile', 'script', 'sh', 'string', 'timeout',
        'usernamePassword', 'withCredentials', 'withEnv', 'writeFile'].sort()

    @Override
    Object getProperty(String name) {
        switch (name) {
            case 'env': return new EnvGlobal(Run.current)
            case 'params': return Run.current.params.asImmutable()
            case 'currentBuild': return Run.current.currentBuild
            default:
                if (getBinding().hasVariable(name)) {
                    return getBinding().getVariable(name)
                }
                Map<String, String> e = Run.current.currentEnv()
                if (e.containsKey(name)) {
                    return e[name]
                }
                if (Run.current.libraryVars.containsKey(name)) {
                    return Run.current.libraryVars[name]
                }
                return super.getProperty(name)
        }
    }

    Object methodMissing(String name, Object args) {
        Object[] a = args as Object[]
        if (Run.current.libraryVars.containsKey(name)) {
            return Run.current.libraryVars[name].invokeMethod('call', a)
        }
        if (name in STEPS) {
            throw new StepFailure("${name}: these arguments do not fit the step: " +
                a.collect { it?.getClass()?.simpleName }.join(', '))
        }
        throw new StepFailure("No such DSL method '${name}' found among steps ${STEPS}")
    }

    void pipeline(Closure body) {
        Harness.runPipeline(Model.of(body))
    }

    // ---- steps ----

    Object sh(Object arg) {
        Map<String, Object> m = Args.of('sh', arg, 'script', ['script', 'returnStatus', 'returnStdout', 'label', 'encoding'])
        String script = m.script?.toString()
        if (!script) {
            throw new StepFailure('sh: no script')
        }
        Run.current.secrets.findAll { it && script.contains(it) }.each {
            Run.current.log('Warning: A secret was passed to "sh" using Groovy String interpolation, which is insecure.')
        }
        Map step = [type: 'sh', script: Run.current.mask(script), stage: Run.current.stage, locks: Run.current.heldLocks.clone(),
                    credentials: Run.current.scopes.collectMany { it.keySet().findAll { k -> Run.current.currentEnv()[k] in Run.current.secrets } }]
        Run.current.steps << step
        Run.current.log("[Pipeline] sh${m.label ? ' (' + m.label + ')' : ''}")
        if (Run.current.stubSh && Run.current.failSh.any { it.matcher(script).find() }) {
            step.exit = 1
            step.skipped = true
            Run.current.log('(the harness fails this sh step: --fail-sh)')
            if (m.returnStatus) {
                return 1
            }
            throw new StepFailure('script returned exit code 1')
        }
        if (Run.current.stubSh || Run.current.skipSh.any { it.matcher(script).find() }) {
            step.exit = 0
            step.skipped = true
            Run.current.log(Run.current.stubSh ? '(the harness runs no sh steps)' : '(skipped by the harness: --skip-sh)')
            return m.returnStdout ? '' : (m.returnStatus ? 0 : null)
        }
        Path tmp = Files.createDirectories(Run.current.workspace.resolveSibling(Run.current.workspace.fileName.toString() + '@tmp'))
        Path file = Files.createTempFile(tmp, 'script', '.sh')
        Files.writeString(file, script)
        ProcessBuilder pb = new ProcessBuilder('sh', '-xe', file.toString()).directory(Run.current.workspace.toFile())
        pb.environment().clear()
        pb.environment().putAll(Run.current.currentEnv())
        pb.redirectErrorStream(true)
        Process p = pb.start()
        p.outputStream.close()
        StringBuilder captured = new StringBuilder()
        Thread reader = Thread.start {
            p.inputStream.newReader('UTF-8').eachLine { line ->
                if (m.returnStdout && !line.startsWith('+ ')) {
                    captured.append(line).append('\n')
                } else {
                    Run.current.log(line)
                }
            }
        }
        long left = Run.current.remainingMillis()
        boolean done = left == Long.MAX_VALUE ? (p.waitFor() >= 0) : p.waitFor(Math.max(left, 0), TimeUnit.MILLISECONDS)
        if (!done) {
            p.descendants().forEach { it.destroy() }
            p.destroy()
            p.waitFor(10, TimeUnit.SECONDS)
            p.destroyForcibly()
            reader.join(5000)
            step.exit = 'timeout'
            throw new TimeoutAbort('Timeout has been exceeded')
        }
        reader.join()
        Files.deleteIfExists(file)
        int code = p.exitValue()
        step.exit = code
        if (m.returnStatus) {
            return code
        }
        if (code != 0) {
            throw new StepFailure("script returned exit code ${code}")
        }
        m.returnStdout ? captured.toString() : null
    }

    void echo(Object message) { Run.current.log(message?.toString()) }

    void error(Object message) { throw new StepFailure(message?.toString()) }

    boolean isUnix() { true }

    void writeFile(Object arg) {
        Map<String, Object> m = Args.of('writeFile', arg, null, ['file', 'text', 'encoding'])
        if (m.file == null || m.text == null) {
            throw new StepFailure('writeFile: file and text are required')
        }
        Path p = Run.current.inWorkspace(m.file.toString())
        Files.createDirectories(p.parent)
        Files.writeString(p, m.text.toString(), java.nio.charset.Charset.forName((m.encoding ?: 'UTF-8').toString()))
        Run.current.steps << [type: 'writeFile', file: m.file.toString(), stage: Run.current.stage]
    }

    String readFile(Object arg) {
        Map<String, Object> m = Args.of('readFile', arg, 'file', ['file', 'encoding'])
        Path p = Run.current.inWorkspace(m.file.toString())
        if (!Files.isRegularFile(p)) {
            throw new StepFailure("readFile: ${p} does not exist")
        }
        Files.readString(p, java.nio.charset.Charset.forName((m.encoding ?: 'UTF-8').toString()))
    }

    boolean fileExists(Object arg) {
        Map<String, Object> m = Args.of('fileExists', arg, 'file', ['file'])
        Files.exists(Run.current.inWorkspace(m.file.toString()))
    }

    Object script(Closure body) { body.call() }

    Object dir(Object path, Closure body) {
        Path old = Run.current.workspace
        Run.current.workspace = Run.current.inWorkspace(path.toString())
        Files.createDirectories(Run.current.workspace)
        try {
            return body.call()
        } finally {
            Run.current.workspace = old
        }
    }

    Object withEnv(List<Object> vars, Closure body) {
        Map<String, String> scope = [:]
        vars.each { v ->
            String s = v.toString()
            int eq = s.indexOf('=')
            if (eq <= 0) {
                throw new StepFailure("withEnv: ${s} is not NAME=VALUE")
            }
            scope[s.substring(0, eq)] = s.substring(eq + 1)
        }
        Run.current.scopes << scope
        try {
            return body.call()
        } finally {
            Run.current.scopes.remove(Run.current.scopes.size() - 1)
        }
    }

    Map string(Map arg) {
        Map<String, Object> m = Args.of('string', arg, null, ['credentialsId', 'variable'])
        [kind: 'string', id: m.credentialsId?.toString(), variable: m.variable?.toString()]
    }

    Map usernamePassword(Map arg) {
        Map<String, Object> m = Args.of('usernamePassword', arg, null, ['credentialsId', 'usernameVariable', 'passwordVariable'])
        [kind: 'usernamePassword', id: m.credentialsId?.toString(), user: m.usernameVariable?.toString(),
         password: m.passwordVariable?.toString()]
    }

    Object withCredentials(List<Map> bindings, Closure body) {
        Map<String, String> scope = [:]
        bindings.each { b ->
            if (!(b instanceof Map) || !b.kind) {
                throw new StepFailure("withCredentials: ${b} is not a credentials binding (string(...), usernamePassword(...))")
            }
            Object value = Run.current.credentials[b.id]
            if (value == null) {
                throw new StepFailure("Could not find credentials entry with ID '${b.id}'")
            }
            if (b.kind == 'string') {
                if (!(value instanceof String)) {
                    throw new StepFailure("Credentials '${b.id}' is of type 'Username with password' where 'Secret text' was expected")
                }
                scope[b.variable] = value
                Run.current.secrets << value
            } else {
                if (!(value instanceof Map)) {
                    throw new StepFailure("Credentials '${b.id}' is of type 'Secret text' where 'Username with password' was expected")
                }
                scope[b.user] = value.username
                scope[b.password] = value.password
                Run.current.secrets << value.password.toString()
            }
        }
        Run.current.scopes << scope
        try {
            return body.call()
        } finally {
            Run.current.scopes.remove(Run.current.scopes.size() - 1)
        }
    }

    Object lock(Object arg, Closure body) {
        Map<String, Object> m = Args.of('lock', arg, 'resource',
            ['resource', 'label', 'quantity', 'variable', 'inversePrecedence', 'skipIfLocked'])
        String resource = m.resource?.toString()
        if (!resource) {
            throw new StepFailure('lock: a resource is required (the harness does not model label locks)')
        }
        // A file lock per resource, so harness builds running at once queue as Jenkins' do.
        Files.createDirectories(Run.current.lockDir)
        Path file = Run.current.lockDir.resolve(resource.replaceAll('[^A-Za-z0-9._-]', '_') + '.lock')
        FileChannel channel = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE)
        def held = channel.lock()
        Run.current.log("[lockable-resources] Lock acquired on [Resource: ${resource}]")
        Run.current.heldLocks << resource
        try {
            return body.call()
        } finally {
            Run.current.heldLocks.remove(resource)
            held.release()
            channel.close()
            Run.current.log("[lockable-resources] Lock released on resource [Resource: ${resource}]")
        }
    }

    Object timeout(Object arg, Closure body) {
        Map<String, Object> m = Args.of('timeout', arg, null, ['time', 'unit', 'activity'])
        long until = System.currentTimeMillis() + Harness.millis('timeout', m)
        long outer = Run.current.deadline
        Run.current.deadline = Math.min(outer, until)
        try {
            return body.call()
        } finally {
            Run.current.deadline = outer
        }
    }

    void junit(Object arg) {
        Map<String, Object> m = Args.of('junit', arg, 'testResults',
            ['testResults', 'allowEmptyResults', 'skipPublishingChecks', 'keepLongStdio', 'skipMarkingBuildUnstable'])
        List<Path> files = Run.current.matching(m.testResults.toString())
        Map record = [pattern: m.testResults.toString(), files: files.collect { Run.current.workspace.relativize(it).toString() },
                      tests: 0, failures: 0, skipped: 0, stage: Run.current.stage]
        Run.current.junit << record
        if (!files) {
            if (m.allowEmptyResults) {
                Run.current.log('None of the test reports contained any result')
                return
            }
            throw new StepFailure('No test report files were found. Configuration error?')
        }
        long started = Run.current.startedMillis
        if (files.every { Files.getLastModifiedTime(it).toMillis() < started - 3000 }) {
            throw new StepFailure("Test reports were found but none of them are new. Did leafNodes run? ${record.files}")
        }
        files.each { f ->
            def root = new XmlSlurper().parse(f.toFile())
            def cases = root.'**'.findAll { it.name() == 'testcase' }
            record.tests += cases.size()
            record.failures += cases.count { c -> c.children().any { it.name() in ['failure', 'error'] } }
            record.skipped += cases.count { c -> c.children().any { it.name() == 'skipped' } }
        }
        Run.current.log("Recording test results: ${record.tests} tests, ${record.failures} failed, ${record.skipped} skipped")
        if (record.failures > 0 && !m.skipMarkingBuildUnstable) {
            Run.current.worsen('UNSTABLE')
            record.unstable = true
        }
    }

    void archiveArtifacts(Object arg) {
        Map<String, Object> m = Args.of('archiveArtifacts', arg, 'artifacts',
            ['artifacts', 'allowEmptyArchive', 'fingerprint', 'onlyIfSuccessful', 'excludes', 'caseSensitive'])
        if (m.onlyIfSuccessful && Run.current.result != 'SUCCESS') {
            return
        }
        List<Path> files = Run.current.matching(m.artifacts.toString())
        if (!files) {
            if (m.allowEmptyArchive) {
                Run.current.log("No artifacts found that match the file pattern \"${m.artifacts}\". Continuing.")
                return
            }
            throw new StepFailure("No artifacts found that match the file pattern \"${m.artifacts}\". Configuration error?")
        }
        files.each { f ->
            String rel = Run.current.workspace.relativize(f).toString()
            Path to = Run.current.buildDir.resolve('archive').resolve(rel)
            Files.createDirectories(to.parent)
            Files.copy(f, to, StandardCopyOption.REPLACE_EXISTING)
            Run.current.archived << rel
        }
        Run.current.log("Archiving artifacts: ${files.size()} file(s)")
    }

    void publishHTML(Object arg) {
        Map<String, Object> m = Args.of('publishHTML', arg, null, ['target'])
        Map t = Args.of('publishHTML target', m.target, null, ['reportDir', 'reportFiles', 'reportName', 'keepAll',
            'alwaysLinkToLastBuild', 'allowMissing', 'reportTitles', 'includes', 'escapeUnderscores', 'useWrapperFileDirectly'])
        ['reportDir', 'reportFiles', 'reportName'].each {
            if (!t[it]) {
                throw new StepFailure("publishHTML: ${it} is required")
            }
        }
        Path dir = Run.current.inWorkspace(t.reportDir.toString())
        List<String> files = t.reportFiles.toString().split(',')*.trim()
        if (!Files.isDirectory(dir) || files.any { !Files.isRegularFile(dir.resolve(it)) }) {
            if (t.allowMissing) {
                Run.current.log("[htmlpublisher] Specified HTML directory '${dir}' does not exist.")
                return
            }
            throw new StepFailure("Specified HTML directory '${dir}' does not exist.")
        }
        Path to = Run.current.buildDir.resolve('htmlreports').resolve(t.reportName.toString().replaceAll('[^A-Za-z0-9_-]', '_'))
        Files.createDirectories(to)
        files.each { Files.copy(dir.resolve(it), to.resolve(it), StandardCopyOption.REPLACE_EXISTING) }
        Run.current.html << [name: t.reportName.toString(), files: files, stage: Run.current.stage]
        Run.current.log("[htmlpublisher] Archiving HTML reports: ${t.reportName}")
    }
}

/** A declarative section's body, read with DELEGATE_ONLY: only its own children are accepted. */
abstract class Section {
    abstract String name()
    abstract List<String> children()

    Object methodMissing(String child, Object args) {
        throw new InvalidPipeline("`${child}` is not allowed in `${name()}` (allowed: ${children().join(', ')})")
    }

    static void read(Closure body, Object delegate) {
        Closure c = (Closure) body.clone()
        c.resolveStrategy = Closure.DELEGATE_ONLY
        c.delegate = delegate
        c.call()
    }
}

class Model extends Section {
    Object agent
    Closure environment
    Map<String, Object> options = [:]
    List<Map> parameters = []
    List<Map> triggers = []
    List<Map> stages = []
    Map<String, Closure> post = [:]
    Set<String> seen = [] as Set

    String name() { 'pipeline' }
    List<String> children() { ['agent', 'environment', 'options', 'parameters', 'post', 'stages', 'triggers'] }

    static Model of(Closure body) {
        Model m = new Model()
        Section.read(body, m)
        ['agent', 'stages'].each {
            if (!(it in m.seen)) {
                throw new InvalidPipeline("Missing required section '${it}'")
            }
        }
        m
    }

    void once(String section) {
        if (!seen.add(section)) {
            throw new InvalidPipeline("Multiple occurrences of the ${section} section")
        }
    }

    Object propertyMissing(String prop) {
        if (prop == 'any' || prop == 'none') {
            return prop
        }
        throw new InvalidPipeline("`${prop}` is not allowed in `pipeline` (allowed: ${children().join(', ')})")
    }

    void agent(Object a) { once('agent'); agent = a }
    void environment(Closure c) { once('environment'); environment = c }
    void options(Closure c) { once('options'); Section.read(c, new Options(target: options)) }
    void parameters(Closure c) { once('parameters'); Section.read(c, new Parameters(target: parameters)) }
    void triggers(Closure c) { once('triggers'); Section.read(c, new Triggers(target: triggers)) }
    void stages(Closure c) { once('stages'); Section.read(c, new Stages(target: stages)) }
    void post(Closure c) { once('post'); Section.read(c, new Post(target: post, where: 'pipeline')) }
}

class Options extends Section {
    Map<String, Object> target
    String name() { 'options' }
    List<String> children() { ['buildDiscarder', 'disableConcurrentBuilds', 'quietPeriod', 'skipDefaultCheckout', 'timeout', 'timestamps'] }
    void timestamps() { target.timestamps = true }
    void disableConcurrentBuilds(Map m = [:]) { target.disableConcurrentBuilds = true }
    void skipDefaultCheckout(boolean b = true) { target.skipDefaultCheckout = b }
    void buildDiscarder(Object o) { target.buildDiscarder = o.toString() }
    Map logRotator(Map m) { m }
    void quietPeriod(int s) {
        if (s < 0) {
            throw new InvalidPipeline("quietPeriod: ${s} is below 0")
        }
        target.quietPeriod = s
    }
    void timeout(Map m) {
        Args.of('timeout', m, null, ['time', 'unit', 'activity'])
        target.timeoutMillis = Harness.millis('options timeout', m)
    }
}

class Parameters extends Section {
    List<Map> target
    String name() { 'parameters' }
    List<String> children() { ['booleanParam', 'choice', 'string', 'text'] }
    void add(String type, Map m, List<String> allowed, Object dflt) {
        try {
            Args.of(type, m, null, allowed)
        } catch (StepFailure e) {
            throw new InvalidPipeline(e.message)
        }
        if (!m.name) {
            throw new InvalidPipeline("${type}: a name is required")
        }
        if (target.any { it.name == m.name.toString() }) {
            throw new InvalidPipeline("Duplicate parameter name: ${m.name}")
        }
        target << [name: m.name.toString(), type: type, default: m.containsKey('defaultValue') ? m.defaultValue : dflt]
    }
    void booleanParam(Map m) {
        add('booleanParam', m, ['name', 'defaultValue', 'description'], false)
        if (!(target[-1].default instanceof Boolean)) {
            throw new InvalidPipeline("booleanParam ${m.name}: defaultValue must be true or false")
        }
    }
    void string(Map m) { add('string', m, ['name', 'defaultValue', 'description', 'trim'], '') }
    void text(Map m) { add('text', m, ['name', 'defaultValue', 'description'], '') }
    void choice(Map m) {
        add('choice', m, ['name', 'choices', 'description'], null)
        target[-1].default = (m.choices as List)?.first()
    }
}

class Triggers extends Section {
    List<Map> target
    String name() { 'triggers' }
    List<String> children() { ['GenericTrigger', 'cron', 'pollSCM'] }
    void cron(String spec) { target << [type: 'cron', spec: spec] }
    void pollSCM(String spec) { target << [type: 'pollSCM', spec: spec] }
    void GenericTrigger(Map m) {
        try {
            Args.of('GenericTrigger', m, null, ['genericVariables', 'genericHeaderVariables', 'genericRequestVariables',
                'token', 'tokenCredentialId', 'causeString', 'printContributedVariables', 'printPostContent',
                'silentResponse', 'regexpFilterText', 'regexpFilterExpression', 'shouldNotFlatten'])
            (m.genericVariables ?: []).each {
                Args.of('genericVariables', it, null, ['key', 'value', 'expressionType', 'regexpFilter', 'defaultValue'])
                if (!it.key || it.value == null) {
                    throw new StepFailure("genericVariables: ${it} needs a key and a value")
                }
            }
        } catch (StepFailure e) {
            throw new InvalidPipeline(e.message)
        }
        target << ([type: 'GenericTrigger'] + m)
    }
}

class Stages extends Section {
    List<Map> target
    String name() { 'stages' }
    List<String> children() { ['stage'] }
    void stage(Object name, Closure body) {
        if (!(name instanceof CharSequence) || !name.toString()) {
            throw new InvalidPipeline("stage: expected a name, got ${name}")
        }
        if (target.any { it.name == name.toString() }) {
            throw new InvalidPipeline("Duplicate stage name: \"${name}\"")
        }
        Stage s = new Stage(stageName: name.toString())
        Section.read(body, s)
        if (!s.steps) {
            throw new InvalidPipeline("stage \"${name}\": nothing to execute within stage (no steps)")
        }
        target << [name: s.stageName, steps: s.steps, post: s.post, environment: s.environment]
    }
}

class Stage extends Section {
    String stageName
    Closure steps
    Closure environment
    Map<String, Closure> post = [:]
    String name() { "stage(\"${stageName}\")" }
    List<String> children() { ['environment', 'post', 'steps'] }
    void steps(Closure c) {
        if (steps) {
            throw new InvalidPipeline("Multiple occurrences of the steps section in stage \"${stageName}\"")
        }
        steps = c
    }
    void environment(Closure c) { environment = c }
    void post(Closure c) { Section.read(c, new Post(target: post, where: "stage(\"${stageName}\")")) }
    void parallel(Object... args) { throw new InvalidPipeline('the harness does not model `parallel`') }
    void stages(Closure c) { throw new InvalidPipeline('the harness does not model nested `stages`') }
    void when(Closure c) { throw new InvalidPipeline('the harness does not model `when`') }
}

class Post extends Section {
    static final List<String> ORDER = ['always', 'changed', 'fixed', 'regression', 'aborted', 'failure',
                                       'success', 'unstable', 'unsuccessful', 'cleanup']
    Map<String, Closure> target
    String where
    String name() { "post of ${where}" }
    List<String> children() { ORDER }
    Object methodMissing(String child, Object args) {
        Object[] a = args as Object[]
        if (child in ORDER && a.length == 1 && a[0] instanceof Closure) {
            if (target.containsKey(child)) {
                throw new InvalidPipeline("Duplicate build condition name: \"${child}\" in ${name()}")
            }
            target[child] = (Closure) a[0]
            return null
        }
        super.methodMissing(child, args)
    }
}

/** The `environment` directive: assignments in order, each seeing the ones before. */
class EnvDirective extends Section {
    Run run
    Map<String, String> target
    String name() { 'environment' }
    List<String> children() { ['credentials'] }
    Object propertyMissing(String prop) {
        switch (prop) {
            case 'env': return new EnvGlobal(run)
            case 'params': return run.params.asImmutable()
            case 'currentBuild': return run.currentBuild
        }
        Map<String, String> e = run.currentEnv() + target
        if (e.containsKey(prop)) {
            return e[prop]
        }
        throw new MissingPropertyException("No such property: ${prop} for class: WorkflowScript")
    }
    void propertyMissing(String prop, Object value) { target[prop] = value?.toString() }
    String credentials(String id) {
        Object value = run.credentials[id]
        if (!(value instanceof String)) {
            throw new StepFailure("Could not find credentials entry with ID '${id}'")
        }
        run.secrets << value
        value
    }
}

class Harness {
    static Map<String, Object> opts
    static int SUCCESS = 0, FAILED = 1, INVALID = 2, NOT_TRIGGERED = 4

    /** A steps or post block: its steps are those of the script it was written in. */
    static Object exec(Closure block) {
        Closure c = (Closure) block.clone()
        c.resolveStrategy = Closure.DELEGATE_FIRST
        c.delegate = block.thisObject
        c.call()
    }

    static long millis(String what, Map m) {
        Object time = m.time
        String unit = (m.unit ?: 'MINUTES').toString()
        if (!(time instanceof Number) || time <= 0) {
            throw new InvalidPipeline("${what}: time must be a positive number, got ${time}")
        }
        if (!(unit in TimeUnit.values()*.name())) {
            throw new InvalidPipeline("${what}: unit ${unit} is not one of ${TimeUnit.values()*.name().join(', ')}")
        }
        TimeUnit.valueOf(unit).toMillis(time as long)
    }

    static void runPipeline(Model model) {
        Run run = Run.current
        run.options = model.options
        if (model.options.timeoutMillis) {
            run.deadline = System.currentTimeMillis() + (model.options.timeoutMillis as long)
        }
        model.parameters.each { run.params[it.name] = run.params.containsKey(it.name) ? run.params[it.name] : it.default }
        trigger(model, run)
        run.params.each { k, v -> run.env[k] = v?.toString() }   // parameters are also env vars
        boolean envOk = guard(run, null) {
            if (model.environment) {
                Section.read(model.environment, new EnvDirective(run: run, target: run.pipelineEnv))
            }
        }
        model.stages.each { s ->
            Map record = [name: s.name]
            run.stages << record
            if (!envOk || run.result != 'SUCCESS' && run.result != 'UNSTABLE') {
                record.status = 'SKIPPED'
                run.log("Stage \"${s.name}\" skipped due to earlier failure(s)")
                return
            }
            run.log("[Pipeline] stage (${s.name})")
            run.stage = s.name
            Map<String, String> scope = [:]
            run.scopes << scope
            String before = run.result
            boolean ok = guard(run, record) {
                if (s.environment) {
                    Section.read(s.environment, new EnvDirective(run: run, target: scope))
                }
                Harness.exec(s.steps)
            }
            record.status = ok ? (run.result == before ? 'SUCCESS' : run.result) : record.status
            runPost(run, s.post, record.status, "stage ${s.name}")
            run.scopes.remove(scope)
            run.stage = null
        }
        runPost(run, model.post, run.result, 'pipeline')
    }

    /** Runs a piece of the build; a failure worsens the result and is logged as Jenkins does. */
    static boolean guard(Run run, Map record, Closure body) {
        try {
            body.call()
            return true
        } catch (InvalidPipeline | NotTriggered e) {
            throw e
        } catch (TimeoutAbort e) {
            fail(run, record, 'ABORTED', e.message)
        } catch (StepFailure e) {
            fail(run, record, 'FAILURE', e.message)
        } catch (MissingPropertyException e) {
            fail(run, record, 'FAILURE', "groovy.lang.MissingPropertyException: ${e.message}")
        } catch (MissingMethodException e) {
            fail(run, record, 'FAILURE', "No such DSL method '${e.method}' found among steps ${PipelineScript.STEPS}")
        } catch (Exception e) {
            fail(run, record, 'FAILURE', "${e.getClass().name}: ${e.message}")
        }
        false
    }

    static void fail(Run run, Map record, String result, String message) {
        run.worsen(result)
        run.errors << message
        if (record != null) {
            record.status = result
            record.error = run.mask(message)
        }
        run.log("ERROR: ${message}")
    }

    static boolean condition(String c, String result) {
        String previous = opts.previousResult
        switch (c) {
            case 'always': case 'cleanup': return true
            case 'success': return result == 'SUCCESS'
            case 'failure': return result == 'FAILURE'
            case 'unstable': return result == 'UNSTABLE'
            case 'aborted': return result == 'ABORTED'
            case 'unsuccessful': return result != 'SUCCESS'
            case 'changed': return previous != null && previous != result
            case 'fixed': return previous != null && previous != 'SUCCESS' && result == 'SUCCESS'
            case 'regression': return previous == 'SUCCESS' && result != 'SUCCESS'
        }
        false
    }

    static void runPost(Run run, Map<String, Closure> post, String stageResult, String where) {
        Post.ORDER.findAll { post.containsKey(it) }.each { c ->
            // A stage's conditions read its own result; the pipeline's the build's, as it is now.
            String result = where == 'pipeline' ? run.result : stageResult
            boolean ran = condition(c, result)
            run.post << [where: where, condition: c, ran: ran]
            if (ran) {
                run.log("[Pipeline] { (Declarative: Post Actions ${c} of ${where})")
                guard(run, run.post[-1]) { exec(post[c]) }
            }
        }
    }

    /** The Generic Webhook Trigger: a webhook with the job's token fills in its variables. */
    static void trigger(Model model, Run run) {
        if (!opts.webhook) {
            return
        }
        Map t = model.triggers.find { it.type == 'GenericTrigger' }
        if (!t) {
            throw new NotTriggered('the job has no GenericTrigger: the webhook triggers nothing')
        }
        String token = t.token?.toString() ?: (t.tokenCredentialId ? run.credentials[t.tokenCredentialId.toString()] : null)
        if (token && opts.webhookToken != token) {
            throw new NotTriggered("the webhook's token does not match the job's (${t.tokenCredentialId ? 'credential ' + t.tokenCredentialId : 'token'}): no job triggered")
        }
        Object json = opts.webhookJson
        if (t.printPostContent) {
            run.log("GenericWebhookEnvironmentContributor Received: ${JsonOutput.toJson(json)}")
        }
        (t.genericVariables ?: []).each { v ->
            Object value = jsonPath(json, v.value.toString())
            String s = value == null ? v.defaultValue?.toString() : (value instanceof Map || value instanceof List ? JsonOutput.toJson(value) : value.toString())
            if (s != null && v.regexpFilter) {
                s = s.replaceAll(v.regexpFilter.toString(), '')
            }
            String key = v.key.toString()
            run.triggerVariables[key] = s
            run.env[key] = s ?: ''
            if (model.parameters.any { it.name == key }) {
                run.params[key] = s ?: ''
            }
            if (t.printContributedVariables) {
                run.log("    ${key} = ${s}")
            }
        }
    }

    /** `$` and `$.a.b[0]` paths: what these jobs use; anything else is refused, not guessed. */
    static Object jsonPath(Object json, String path) {
        if (path == '$') {
            return json
        }
        if (!(path ==~ /\$(\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])+/)) {
            throw new InvalidPipeline("genericVariables: the harness resolves only \$ and \$.a.b[0] paths, not ${path}")
        }
        Object at = json
        (path.substring(1) =~ /\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]/).each { m ->
            if (at == null) {
                return
            }
            at = m[1] != null ? (at instanceof Map ? at[m[1]] : null) : (at instanceof List && (m[2] as int) < at.size() ? at[m[2] as int] : null)
        }
        at
    }
}

class NotTriggered extends RuntimeException {
    NotTriggered(String msg) { super(msg) }
}

// ---- the command line ----

String usage = '''usage: scripts/run-jenkinsfile [options] JENKINSFILE...
  --workspace DIR        the job's workspace (the repository's checkout) [.]
  --build-dir DIR        where archived artifacts, HTML reports and result.json go [WORKSPACE@builds/N]
  --library DIR          a shared library's root: vars/NAME.groovy become steps (@Library)
  --env NAME=VALUE       an agent or Jenkins variable (BUILD_NUMBER, JOB_NAME, ...); repeatable
  --param NAME=VALUE     a build parameter; repeatable
  --credentials FILE     JSON: {"id": "secret text", "id2": {"username": .., "password": ..}}
  --webhook FILE         a body POSTed to /generic-webhook-trigger/invoke
  --webhook-token TOKEN  the token that request carries
  --previous-result R    the job's last result, for changed/fixed/regression
  --skip-sh REGEX        sh steps matching are logged, not run (a tools build done beforehand)
  --stub-sh              run no sh step (each returns 0): the structure and Groovy only;
                         then several JENKINSFILE[::LIBRARY_DIR] may be given
  --fail-sh REGEX        with --stub-sh: sh steps matching return 1 (the failure path)
  --result FILE          what the build did, as JSON [BUILD_DIR/result.json]'''

Map<String, Object> o = [workspace: '.', env: [:], params: [:], skipSh: [], failSh: [], files: []]
List<String> argv = args as List<String>
int i = 0
try {
    while (i < argv.size()) {
        String a = argv[i++]
        Closure<String> value = {
            if (i >= argv.size()) {
                throw new IllegalArgumentException("${a} needs a value")
            }
            argv[i++]
        }
        Closure<List<String>> pair = {
            String v = value()
            int eq = v.indexOf('=')
            if (eq <= 0) {
                throw new IllegalArgumentException("${a} ${v}: expected NAME=VALUE")
            }
            [v.substring(0, eq), v.substring(eq + 1)]
        }
        switch (a) {
            case '--workspace': o.workspace = value(); break
            case '--build-dir': o.buildDir = value(); break
            case '--library': o.library = value(); break
            case '--env': def (k, v) = pair(); o.env[k] = v; break
            case '--param': def (k, v) = pair(); o.params[k] = v; break
            case '--credentials': o.credentials = value(); break
            case '--webhook': o.webhook = value(); break
            case '--webhook-token': o.webhookToken = value(); break
            case '--previous-result': o.previousResult = value(); break
            case '--skip-sh': o.skipSh << java.util.regex.Pattern.compile(value()); break
            case '--stub-sh': o.stubSh = true; break
            case '--fail-sh': o.failSh << java.util.regex.Pattern.compile(value()); break
            case '--result': o.result = value(); break
            case '--help': println usage; System.exit(0); break
            default:
                if (a.startsWith('-')) {
                    throw new IllegalArgumentException("unknown option ${a}")
                }
                o.files << a
        }
    }
    if (!o.files) {
        throw new IllegalArgumentException('no Jenkinsfile given')
    }
    if (o.files.size() > 1 && !o.stubSh) {
        throw new IllegalArgumentException('several Jenkinsfiles only with --stub-sh (their sh steps would share a workspace)')
    }
    // Every file and directory named is checked now: a bad option is exit 2 before any build.
    if (!new File(o.workspace.toString()).isDirectory()) {
        throw new IllegalArgumentException("--workspace ${o.workspace}: not a directory")
    }
    o.files.each { String f ->
        String path = o.stubSh && f.contains('::') ? f.split('::', 2)[0] : f
        if (!new File(path).isFile()) {
            throw new IllegalArgumentException("${path}: no such Jenkinsfile")
        }
    }
    ['credentials', 'webhook'].each { String key ->
        if (o[key] == null) {
            return
        }
        try {
            o[key + 'Json'] = new JsonSlurper().parse(new File(o[key].toString()))
        } catch (groovy.json.JsonException | IOException e) {
            throw new IllegalArgumentException("--${key} ${o[key]}: expected a readable JSON file (${e.message.readLines()[0]})")
        }
    }
    if (o.credentialsJson != null && !(o.credentialsJson instanceof Map)) {
        throw new IllegalArgumentException("--credentials ${o.credentials}: expected a JSON object of id: secret")
    }
} catch (IllegalArgumentException e) {
    System.err.println("run-jenkinsfile: ${e.message}\n${usage}")
    System.exit(Harness.INVALID)
}
Harness.opts = o

Path workspace = Paths.get(o.workspace.toString()).toAbsolutePath().normalize()
Map credentials = (o.credentialsJson ?: [:]) as Map
List<Map> results = []
int exit = Harness.SUCCESS

CompilerConfiguration cc = new CompilerConfiguration()
cc.scriptBaseClass = PipelineScript.name
GroovyClassLoader loader = new GroovyClassLoader(this.class.classLoader, cc)

o.files.each { String arg ->
    List<String> parts = o.stubSh && arg.contains('::') ? arg.split('::', 2) as List : [arg, o.library]
    String jenkinsfile = parts[0]
    String libraryDir = parts[1]
    Run run = new Run()
    Run.current = run
    run.workspace = workspace
    run.credentials = credentials
    run.stubSh = o.stubSh as boolean
    run.skipSh = o.skipSh
    run.failSh = o.failSh
    run.currentBuild = new CurrentBuild(run: run)
    String number = o.env.BUILD_NUMBER ?: '1'
    String job = o.env.JOB_NAME ?: 'job'
    run.env.putAll(System.getenv().subMap(['PATH', 'HOME', 'USER', 'LANG', 'TMPDIR'].findAll { System.getenv(it) != null }))
    run.env.putAll([BUILD_NUMBER: number, BUILD_ID: number, JOB_NAME: job, JOB_BASE_NAME: job,
                    BUILD_TAG: "jenkins-${job}-${number}".toString(), WORKSPACE: workspace.toString(),
                    JENKINS_URL: 'http://127.0.0.1/', BUILD_URL: "http://127.0.0.1/job/${job}/${number}/".toString(),
                    NODE_NAME: 'built-in', EXECUTOR_NUMBER: '0'])
    run.env.putAll(o.env)
    run.params.putAll(o.params)
    run.buildDir = Paths.get(o.buildDir ?: "${workspace}@builds/${number}").toAbsolutePath()
    run.lockDir = workspace.resolveSibling(workspace.fileName.toString() + '@locks')
    Files.createDirectories(run.buildDir)
    Map outcome = [jenkinsfile: jenkinsfile]
    try {
        String text = new File(jenkinsfile).getText('UTF-8')
        def library = (text =~ /@Library\(\s*['"]([^'"]+)['"]\s*\)/)
        if (library.find()) {
            if (!libraryDir) {
                throw new InvalidPipeline("No library named ${library.group(1)} found (give --library)")
            }
            new File(libraryDir, 'vars').listFiles().findAll { it.name.endsWith('.groovy') }.each { f ->
                Class<?> c = loader.parseClass(f)
                run.libraryVars[f.name - '.groovy'] = (Script) c.getDeclaredConstructor().newInstance()
            }
        }
        text = text.replaceAll(/@Library\(\s*['"][^'"]+['"]\s*\)\s*_/, '')
        Class<?> c = loader.parseClass(text, 'WorkflowScript')
        Script script = (Script) c.getDeclaredConstructor().newInstance()
        run.log("[harness] Running ${jenkinsfile} as build #${number} of ${job}")
        Harness.guard(run, null) { script.run() }
        if (!run.stages && !run.errors) {
            throw new InvalidPipeline('no pipeline { } block ran')
        }
        run.log("Finished: ${run.result}")
        outcome.result = run.result
        exit = Math.max(exit, run.result == 'SUCCESS' ? Harness.SUCCESS : Harness.FAILED)
    } catch (MultipleCompilationErrorsException e) {
        outcome.result = 'INVALID'
        outcome.invalid = e.message.readLines().findAll { it.trim() && !it.startsWith('startup failed') }.join(' ').trim()
        exit = Math.max(exit, Harness.INVALID)
    } catch (InvalidPipeline e) {
        outcome.result = 'INVALID'
        outcome.invalid = e.message
        exit = Math.max(exit, Harness.INVALID)
    } catch (NotTriggered e) {
        outcome.result = 'NOT_TRIGGERED'
        outcome.invalid = e.message
        exit = Math.max(exit, Harness.NOT_TRIGGERED)
    }
    if (outcome.invalid?.length() > 400) {
        outcome.invalid = outcome.invalid.take(400) + '…'
    }
    if (outcome.invalid) {
        System.err.println("run-jenkinsfile: ${jenkinsfile}: ${outcome.invalid}")
    }
    outcome += [stages: run.stages, steps: run.steps, post: run.post, archived: run.archived, html: run.html,
                junit: run.junit, errors: run.errors.collect { run.mask(it) }, description: run.currentBuild.description,
                options: run.options, params: run.params.collectEntries { k, v -> [k, run.mask(v?.toString() ?: '')] },
                environment: run.pipelineEnv.collectEntries { k, v -> [k, run.mask(v ?: '')] }]
    results << outcome
    if (o.files.size() == 1) {
        Path out = o.result ? Paths.get(o.result.toString()) : run.buildDir.resolve('result.json')
        out.toFile().setText(JsonOutput.prettyPrint(JsonOutput.toJson(outcome)), 'UTF-8')
    }
}
if (o.files.size() > 1 && o.result) {
    new File(o.result.toString()).setText(JsonOutput.prettyPrint(JsonOutput.toJson(results)), 'UTF-8')
}
System.exit(exit)
