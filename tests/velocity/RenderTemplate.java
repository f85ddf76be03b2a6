// Renders an API Gateway mapping template with Apache Velocity 1.7 (the engine API Gateway
// runs) so tests can compare the shim's airspeed output byte for byte.
// Usage: java RenderTemplate <template> <body file> <requestId> <path> <resourcePath> [job_id
//        [requestTimeEpoch requestTime]]
//        java RenderTemplate --batch <dir> <count>   (see main)
// Request headers ($input.params('<header>')): the VTL_HEADERS environment variable, JSON.
// Prints the output; what $context.responseOverride sets goes to stderr, one line each:
// `status=<code>` and `header:<name>=<value>`.
import java.io.StringWriter;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.commons.lang.StringEscapeUtils;
import org.apache.velocity.VelocityContext;
import org.apache.velocity.app.VelocityEngine;

public class RenderTemplate {
    public static class Input {
        private final String body;
        private final Map<String, String> params;
        public Input(String body, Map<String, String> params) {
            this.body = body;
            this.params = params;
        }
        public String getBody() { return body; }
        // Path parameters by name; then request headers, by name in any case, from the
        // VTL_HEADERS environment variable (a JSON object), as API Gateway looks them up.
        public String params(String name) {
            if (params.containsKey(name)) return params.get(name);
            String raw = System.getenv("VTL_HEADERS");
            if (raw == null || raw.isEmpty()) return null;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) new Json(raw).value()).entrySet()) {
                if (((String) e.getKey()).equalsIgnoreCase(name)) return (String) e.getValue();
            }
            return null;
        }
        // The JSONPath subset the templates use: $ and .name segments.
        public Object path(String path) {
            Object current = body.trim().isEmpty() ? null : new Json(body).value();
            for (String part : path.substring(1).split("\\.")) {
                if (part.isEmpty()) continue;
                if (!(current instanceof Map)) return null;
                current = ((Map<?, ?>) current).get(part);
            }
            return current;
        }
    }

    // A small JSON reader: objects, arrays, strings, numbers, true/false/null.
    static class Json {
        private final String s;
        private int i = 0;
        Json(String s) { this.s = s; }
        Object value() {
            skip();
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> map = new LinkedHashMap<>();
                i++; skip();
                if (s.charAt(i) == '}') { i++; return map; }
                while (true) {
                    skip(); String key = string(); skip(); i++; // ':'
                    map.put(key, value()); skip();
                    if (s.charAt(i++) == '}') return map;
                }
            }
            if (c == '[') {
                List<Object> list = new ArrayList<>();
                i++; skip();
                if (s.charAt(i) == ']') { i++; return list; }
                while (true) {
                    list.add(value()); skip();
                    if (s.charAt(i++) == ']') return list;
                }
            }
            if (c == '"') return string();
            if (s.startsWith("true", i)) { i += 4; return Boolean.TRUE; }
            if (s.startsWith("false", i)) { i += 5; return Boolean.FALSE; }
            if (s.startsWith("null", i)) { i += 4; return null; }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            String n = s.substring(start, i);
            return n.matches("-?\\d+") ? (Object) Long.valueOf(n) : (Object) Double.valueOf(n);
        }
        private void skip() { while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++; }
        private String string() {
            StringBuilder out = new StringBuilder();
            i++;
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') return out.toString();
                if (c != '\\') { out.append(c); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n': out.append('\n'); break;
                    case 't': out.append('\t'); break;
                    case 'r': out.append('\r'); break;
                    case 'b': out.append('\b'); break;
                    case 'f': out.append('\f'); break;
                    case 'u': out.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                    default: out.append(e);
                }
            }
        }
    }

    public static class Util {
        public String escapeJavaScript(String s) { return StringEscapeUtils.escapeJavaScript(s); }
        public String base64Encode(String s) {
            return Base64.getEncoder().encodeToString(s.getBytes(StandardCharsets.UTF_8));
        }
        public String base64Decode(String s) {
            return new String(Base64.getDecoder().decode(s), StandardCharsets.UTF_8);
        }
        public String urlEncode(String s) throws Exception { return URLEncoder.encode(s, "UTF-8"); }
    }

    // Renders one template; returns the output and writes the overrides to `overrides`.
    static String render(VelocityEngine engine, String template, String body, String requestId,
                         String path, String resourcePath, String jobId, String[] times,
                         Map<String, String> query, StringBuilder overrides) {
        VelocityContext context = new VelocityContext();
        Map<String, Object> ctx = new HashMap<>();
        ctx.put("requestId", requestId);
        ctx.put("path", path);
        ctx.put("resourcePath", resourcePath);
        // $context.requestTimeEpoch is a number (milliseconds), requestTime CLF-formatted.
        if (times != null && !times[0].isEmpty()) {
            ctx.put("requestTimeEpoch", Long.valueOf(times[0]));
            ctx.put("requestTime", times[1]);
        }
        Map<String, Object> override = new HashMap<>();
        Map<String, Object> headers = new java.util.TreeMap<>();
        override.put("header", headers);
        ctx.put("responseOverride", override);
        context.put("context", ctx);
        Map<String, String> params = new HashMap<>();
        if (jobId != null) params.put("job_id", jobId);
        if (query != null) params.putAll(query);
        context.put("input", new Input(body, params));
        context.put("util", new Util());
        StringWriter out = new StringWriter();
        engine.evaluate(context, out, "template", template);
        if (override.get("status") != null) overrides.append("status=").append(override.get("status")).append('\n');
        for (Map.Entry<String, Object> e : headers.entrySet()) {
            overrides.append("header:").append(e.getKey()).append('=').append(e.getValue()).append('\n');
        }
        return out.toString();
    }

    static String read(String path) throws Exception {
        return new String(Files.readAllBytes(Paths.get(path)), StandardCharsets.UTF_8);
    }

    // One JVM for many renders: `--batch <dir> <n>` renders case <i> from <dir>/<i>.template,
    // <i>.body and <i>.args (requestId, path, resourcePath, job_id, and optionally
    // requestTimeEpoch and requestTime: one a line) into <i>.out and <i>.err.
    public static void main(String[] args) throws Exception {
        VelocityEngine engine = new VelocityEngine();
        engine.setProperty("runtime.log.logsystem.class",
                           "org.apache.velocity.runtime.log.NullLogChute");
        engine.init();
        if (args[0].equals("--batch")) {
            int n = Integer.parseInt(args[2]);
            for (int i = 0; i < n; i++) {
                String base = args[1] + "/" + i;
                String[] a = read(base + ".args").split("\n", -1);
                StringBuilder overrides = new StringBuilder();
                String[] times = a.length > 5 ? new String[] {a[4], a[5]} : null;
                // Lines after the sixth: query string parameters, `name=value` each.
                Map<String, String> query = new HashMap<>();
                for (int j = 6; j < a.length; j++) {
                    int eq = a[j].indexOf('=');
                    if (eq > 0) query.put(a[j].substring(0, eq), a[j].substring(eq + 1));
                }
                String text = render(engine, read(base + ".template"), read(base + ".body"), a[0],
                                     a[1], a[2], a[3].isEmpty() ? null : a[3], times, query,
                                     overrides);
                Files.write(Paths.get(base + ".out"), text.getBytes(StandardCharsets.UTF_8));
                Files.write(Paths.get(base + ".err"),
                            overrides.toString().getBytes(StandardCharsets.UTF_8));
            }
            return;
        }
        StringBuilder overrides = new StringBuilder();
        String[] times = args.length > 7 ? new String[] {args[6], args[7]} : null;
        String text = render(engine, read(args[0]), read(args[1]), args[2], args[3], args[4],
                             args.length > 5 ? args[5] : null, times, null, overrides);
        System.out.write(text.getBytes(StandardCharsets.UTF_8));
        System.out.flush();
        System.err.print(overrides);
    }
}
